"""TC3-HMAC-SHA256, checked the way Tencent Cloud API 3.0 checks it.

Every Tencent Cloud service signs requests the same way; only the service name in the credential
scope differs ("dbbrain", "sts", ...), so every check here takes the service as a parameter. The
signature is recomputed from the headers and body as received, because the SDK signs the values
it actually sent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message

from standins.dbbrain.calls import ApiError

MAX_CLOCK_SKEW = 300  # seconds, as DBbrain
SIGNED_HEADERS = "content-type;host"
AUTH_RE = re.compile(
    r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/([^/]+)/tc3_request, "
    r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})"
)


@dataclass(frozen=True)
class Authorization:
    """The parts of an Authorization header."""

    secret_id: str
    date: str
    service: str
    signed_headers: str
    signature: str


def tc3_signature(
    secret_key: str, date: str, timestamp: str, canonical_request: str, *, service: str
) -> str:
    """The hex signature of a canonical request, keyed for `service`'s credential scope."""

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    scope = f"{date}/{service}/tc3_request"
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{digest}"
    key = mac(mac(mac(("TC3" + secret_key).encode(), date), service), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def check_timestamp(timestamp: str) -> str:
    """The X-TC-Timestamp, if it is within MAX_CLOCK_SKEW of now."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW:
        raise ApiError("AuthFailure.SignatureExpire", "The signature has expired.")
    return timestamp


def parse_authorization(header: str) -> Authorization:
    match = AUTH_RE.fullmatch(header)
    if not match:
        raise ApiError("AuthFailure.InvalidAuthorization", "Authorization is malformed.")
    return Authorization(*match.groups())


def check_signature(
    auth: Authorization,
    secret_key: str,
    *,
    service: str,
    method: str,
    headers: Message,
    body: bytes,
    timestamp: str,
) -> None:
    """Raise AuthFailure.SignatureFailure unless `auth` signs this request for `service`."""
    unsigned = headers.get("X-TC-Content-SHA256") == "UNSIGNED-PAYLOAD"
    payload_hash = hashlib.sha256(b"UNSIGNED-PAYLOAD" if unsigned else body).hexdigest()
    canonical = (
        f"{method}\n/\n\ncontent-type:{headers.get('Content-Type', '')}\n"
        f"host:{headers.get('Host', '')}\n\n{SIGNED_HEADERS}\n{payload_hash}"
    )
    utc_date = datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d")
    expected = tc3_signature(secret_key, auth.date, timestamp, canonical, service=service)
    scope_ok = (auth.service, auth.signed_headers, auth.date) == (service, SIGNED_HEADERS, utc_date)
    if not scope_ok or not hmac.compare_digest(expected, auth.signature):
        raise ApiError("AuthFailure.SignatureFailure", "The signature is not valid.")
