"""A stand-in for Tencent Cloud STS (service "sts", version 2018-08-13): AssumeRole only.

It checks TC3 signatures like every stand-in (standins.dbbrain.server), hands out temporary
keys that expire, and grants them to the DBbrain emulator so calls signed with them pass there
(with their token) until they expire.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

from standins.dbbrain.calls import ApiError
from standins.dbbrain.params import check_params
from standins.dbbrain.server import Answer, CloudApiServer


def assume_role(sts: StsStandIn, params: dict[str, Any]) -> Answer:
    spec = {"RoleArn": str, "RoleSessionName": str, "DurationSeconds": int, "Policy": str}
    check_params(params, spec, ("RoleArn", "RoleSessionName"))
    account = sts.roles.get(params["RoleArn"])
    if account is None:
        raise ApiError("InvalidParameter.RoleNotExist", "The role does not exist.")
    duration = params.get("DurationSeconds", 7200)
    lifetime = min(duration, sts.lifetime) if sts.lifetime else duration
    expires = int(time.time() + lifetime)
    keys = {
        "TmpSecretId": f"AKIDTMP{secrets.token_hex(6)}",
        "TmpSecretKey": secrets.token_hex(16),
        "Token": secrets.token_hex(24),
    }
    for server in sts.grant_to:
        server.grant(keys["TmpSecretId"], keys["TmpSecretKey"], keys["Token"], expires, account)
    with sts._cond:
        sts.issued.append({**keys, "ExpiredTime": expires, "Account": account})
    expiration = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"Credentials": keys, "ExpiredTime": expires, "Expiration": expiration}, "assumed"


class StsStandIn(CloudApiServer):
    service = "sts"
    version = "2018-08-13"
    actions: ClassVar[dict[str, Any]] = {"AssumeRole": assume_role}

    def __init__(
        self,
        keys: dict[str, str],
        *,
        roles: dict[str, str],
        grant_to: list[CloudApiServer],
        lifetime: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """`roles`: role ARN → the account it acts in. `lifetime` caps every key's life, so
        tests can see a refresh without waiting an hour."""
        super().__init__(keys, host, port)
        self.roles = dict(roles)
        self.grant_to = list(grant_to)
        self.lifetime = lifetime
        self.issued: list[dict[str, Any]] = []
