"""Keys for each account: part of the DBbrain seam, so it may import Tencent's SDK.

`env`, `profile`, `cvm_role` and `tke_oidc` are the SDK's own providers. `assume_role` is a
small provider of our own on the SDK's CommonClient: the SDK's STSAssumeRoleCredential always
speaks https and takes only a static key pair, while ours speaks the scheme of
TENCENTCLOUD_STS_ENDPOINT and may stand on any other account's keys (a CVM or TKE role too).

Temporary keys and tokens are held in memory only and never logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from bot.cloud import CloudError
from bot.estate import Account

log = logging.getLogger(__name__)

DEFAULT_STS_ENDPOINT = "https://sts.tencentcloudapi.com"
STS_REGION = "ap-guangzhou"
STS_VERSION = "2018-08-13"
REFRESH_MARGIN = 300  # seconds before expiry a temporary key is replaced (or a fifth of its life)


class AssumedRole:
    """Temporary keys for a role, from STS AssumeRole, replaced before they expire. A refusal
    is raised to the action that needed the keys and is not retried here: the next action asks
    STS again."""

    def __init__(
        self,
        base: object,
        account: Account,
        endpoint: tuple[str, str],
        timeout: int = 10,
        clock: Callable[[], float] = time.time,
    ):
        self._base = base
        self._account = account
        self._profile = ClientProfile(
            httpProfile=HttpProfile(protocol=endpoint[0], endpoint=endpoint[1], reqTimeout=timeout)
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: tuple[str, str, str] | None = None
        self._refresh_at = 0.0

    def get_credential_info(self) -> tuple[str, str, str]:
        with self._lock:
            if self._keys is None or self._clock() >= self._refresh_at:
                self._assume()
            assert self._keys is not None
            return self._keys

    def _assume(self) -> None:
        secret_id, secret_key, token = self._base.get_credential_info()  # type: ignore[attr-defined]
        base = credential.Credential(secret_id, secret_key, token or None)
        client = CommonClient("sts", STS_VERSION, base, STS_REGION, self._profile)
        params = {
            "RoleArn": self._account.role_arn,
            "RoleSessionName": self._account.session_name,
            "DurationSeconds": self._account.duration_seconds,
        }
        try:
            answer = client.call_json("AssumeRole", params)["Response"]
            keys = answer["Credentials"]
            expires = float(answer["ExpiredTime"])
            self._keys = (keys["TmpSecretId"], keys["TmpSecretKey"], keys["Token"])
        except TencentCloudSDKException as exc:
            log.warning(
                "assume_role_refused account=%s code=%s request_id=%s",
                self._account.name, exc.get_code(), exc.get_request_id(),
            )  # fmt: skip
            raise CloudError(
                exc.get_code() or "Unknown",
                str(exc.get_message() or "")[:300],
                request_id=exc.get_request_id() or None,
                action="AssumeRole",
            ) from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise CloudError(
                "BadResponse", "STS answered without temporary keys", action="AssumeRole"
            ) from exc
        now = self._clock()
        self._refresh_at = expires - min(REFRESH_MARGIN, max(expires - now, 0) / 5)
        log.info("assume_role_ok account=%s expires_at=%d", self._account.name, expires)


class Credentials:
    """One provider per account, made on first use and kept (the SDK's refresh themselves)."""

    def __init__(
        self,
        accounts: Callable[[], tuple[Account, ...]],
        env_keys: tuple[str, str, str | None] | None,
        sts_endpoint: tuple[str, str] = ("https", "sts.tencentcloudapi.com"),
        timeout: int = 10,
    ):
        self._accounts = accounts
        self._env_keys = env_keys
        self._sts_endpoint = sts_endpoint
        self._timeout = timeout
        self._providers: dict[Account, object] = {}
        self._lock = threading.Lock()

    def provider(self, account: Account) -> object:
        """The account's provider; CloudError (action Credentials) when it cannot be made."""
        with self._lock:
            found = self._providers.get(account)
            if found is None:
                found = self._make(account, set())
                self._providers[account] = found
            return found

    def check(self, account: Account) -> None:
        """Ask for the keys now, so a refused AssumeRole is one clear error before any call."""
        provider = self.provider(account)
        try:
            secret_id, secret_key, _token = provider.get_credential_info()  # type: ignore[attr-defined]
        except CloudError:
            raise
        except (TencentCloudSDKException, OSError, KeyError) as exc:
            raise _missing(account, f"its {account.kind} keys could not be read") from exc
        if not secret_id or not secret_key:  # the CVM role's provider says so by returning None
            raise _missing(account, f"its {account.kind} keys could not be read")

    def _make(self, account: Account, seen: set[str]) -> object:
        kind = account.kind
        try:
            if kind == "env":
                if not self._env_keys:
                    raise _missing(
                        account, "TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY are not set"
                    )
                return credential.Credential(*self._env_keys)
            if kind == "profile":
                found = credential.ProfileCredential().get_credential()
                if found is None:
                    raise _missing(account, "~/.tencentcloud/credentials has no [default] keys")
                return found
            if kind == "cvm_role":
                return credential.CVMRoleCredential()
            if kind == "tke_oidc":
                return credential.DefaultTkeOIDCRoleArnProvider().get_credential()
        except (TencentCloudSDKException, OSError) as exc:
            raise _missing(account, f"its {kind} keys could not be read ({exc})") from exc
        base = self._base(account, seen)
        return AssumedRole(base, account, self._sts_endpoint, self._timeout)

    def _base(self, account: Account, seen: set[str]) -> object:
        if account.base is None:
            return self._make(account_env(account), seen)
        if account.base in seen:
            raise _missing(account, "its base accounts name each other in a circle")
        base = next((a for a in self._accounts() if a.name == account.base), None)
        if base is None:
            raise _missing(account, f"its base account {account.base} is not in the policy")
        return self._providers.get(base) or self._make(base, seen | {account.name})


def account_env(account: Account) -> Account:
    return Account(f"{account.name}-base", account.instances)


def _missing(account: Account, why: str) -> CloudError:
    return CloudError("CredentialsMissing", f"account {account.name}: {why}", action="Credentials")
