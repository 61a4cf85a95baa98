"""Slack's request signature, checked over the raw bytes before anything parses the body.

Bolt parses a body before it checks the signature, so a forged request that is not JSON ends in
a 500 with a traceback, and a forged one with a bad signature is logged whole. This middleware
answers every such request itself (413, 401 or 400, one short log line, no body and no header
values in it) and hands only signed, parseable bodies on to Bolt, byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # 1 MiB: Slack's own payloads are far smaller
MAX_AGE = 5 * 60  # seconds either side of now, as Slack advises and Bolt checks
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")  # ASCII only: "¹²³".isdigit() is True
_CONTENT_LENGTH_RE = re.compile(r"[0-9]{1,20}")

_STATUS = {
    400: ("400 Bad Request", b"malformed request\n"),
    401: ("401 Unauthorized", b"invalid or missing Slack signature\n"),
    413: ("413 Content Too Large", b"request body too large\n"),
}

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class _Refused(Exception):
    def __init__(self, status: int, reason: str, size: int | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.size = size


def verified(
    app: WsgiApp,
    signing_secret: str,
    clock: Callable[[], float] = time.time,
    max_body: int = MAX_BODY,
) -> WsgiApp:
    """Wrap the app behind POST /slack/events: only signed, parseable bodies reach it.

    Every request the wrapper sees is checked; route only Slack's requests to it.
    """
    key = signing_secret.encode("utf-8")

    def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            body = _check(environ, key, clock, max_body)
        except _Refused as refused:
            size = "" if refused.size is None else f" bytes={refused.size}"
            log.warning(
                "slack_request_refused status=%d reason=%s%s",
                refused.status,
                refused.reason,
                size,
            )
            status, text = _STATUS[refused.status]
            headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))]
            start_response(status, headers)
            return [text]
        body = _plain_form(body, environ.get("CONTENT_TYPE"))
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return app(environ, start_response)

    return application


def _check(environ: Environ, key: bytes, clock: Callable[[], float], max_body: int) -> bytes:
    """The body, once it is known to be Slack's and parseable; otherwise why not."""
    declared = _content_length(environ)
    if declared is not None and declared > max_body:
        raise _Refused(413, "too_large", declared)

    timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP")
    signature = environ.get("HTTP_X_SLACK_SIGNATURE")
    if not isinstance(timestamp, str) or not timestamp:
        raise _Refused(401, "missing_timestamp", declared)
    if not isinstance(signature, str) or not signature:
        raise _Refused(401, "missing_signature", declared)
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise _Refused(401, "bad_timestamp", declared)
    if abs(clock() - int(timestamp)) > MAX_AGE:
        raise _Refused(401, "stale_timestamp", declared)

    body = _read(environ, declared, max_body)
    mac = hmac.new(key, b"v0:" + timestamp.encode("ascii") + b":" + body, hashlib.sha256)
    expected = b"v0=" + mac.hexdigest().encode("ascii")
    if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
        raise _Refused(401, "bad_signature", len(body))

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, "not_utf8", len(body)) from None
    if not _parses(text, environ.get("CONTENT_TYPE")):
        raise _Refused(400, "not_parseable", len(body))
    return body


def _content_length(environ: Environ) -> int | None:
    raw = environ.get("CONTENT_LENGTH")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not _CONTENT_LENGTH_RE.fullmatch(raw):
        raise _Refused(400, "bad_content_length")
    return int(raw)


def _read(environ: Environ, declared: int | None, max_body: int) -> bytes:
    """At most max_body + 1 bytes, so a body that lies about its length still cannot flood us."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    limit = max_body + 1 if declared is None else declared
    chunks: list[bytes] = []
    size = 0
    try:
        while size < limit:
            chunk = stream.read(min(limit - size, 64 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except Exception:  # the server's own errors for a broken or truncated upload
        raise _Refused(400, "unreadable_body", size) from None
    if size > max_body:
        raise _Refused(413, "too_large", size)
    return b"".join(chunks)


def _parses(text: str, content_type: object) -> bool:
    """Whether Bolt's parser (slack_bolt.request.internals.parse_body) will read this body.

    Bolt reads JSON when the content type says so or the body starts with "{", otherwise a
    form, whose `payload` field, when there is one, is JSON again. Each JSON must be an object.
    """
    if not text:
        return True
    media = content_type.split(";")[0].strip().lower() if isinstance(content_type, str) else ""
    if media == "application/json" or text.startswith("{"):
        return _is_json_object(text)
    if "payload" in text:
        payload = dict(parse_qsl(text, keep_blank_values=True)).get("payload")
        return payload is None or _is_json_object(payload)
    return True


def _plain_form(body: bytes, content_type: object) -> bytes:
    """Bolt reads any form body that contains the word "payload" as an interactive payload, and
    drops it when there is no payload field: a slash command whose text or channel name says
    "payload" would be ignored without a word. Percent-encoding one letter hides the word from
    that test and leaves every value the same once decoded. (Bolt's own signature check is off
    in HTTP mode: this wrapper has checked the original bytes.)"""
    media = content_type.split(";")[0].strip().lower() if isinstance(content_type, str) else ""
    if b"payload" not in body or media == "application/json" or body.startswith(b"{"):
        return body
    if "payload" in dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True)):
        return body
    return body.replace(b"payload", b"p%61yload")


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):  # JSONDecodeError, too many digits, too deep
        return False
