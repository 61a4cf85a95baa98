"""Keys per account: the providers chosen, what is missing said plainly, and the assumed role's
refresh before expiry (against the STS stand-in, with a hand-driven clock)."""

from __future__ import annotations

import time

import pytest
from tencentcloud.common import credential

from bot.cloud import CloudError
from bot.credentials import AssumedRole, Credentials
from bot.estate import Account
from standins.dbbrain import DbbrainEmulator
from standins.sts import StsStandIn
from tests.conftest import PROXY_VARS

ROLE = "qcs::cam::uin/100000000001:roleName/killtask"
KEYS = {"AKIDBASE": "base-secret"}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def test_env_keys_that_are_not_set_are_named() -> None:
    with pytest.raises(CloudError) as caught:
        Credentials(lambda: (), None).check(Account("default"))
    assert caught.value.action == "Credentials"
    assert "TENCENTCLOUD_SECRET_ID" in caught.value.explain()


def test_a_missing_credentials_file_is_said_plainly(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("os.path.exists", lambda path: False)
    with pytest.raises(CloudError, match="credentials has no"):
        Credentials(lambda: (), None).provider(Account("files", kind="profile"))


def test_an_assume_role_on_a_missing_base_account_is_refused() -> None:
    account = Account("prod", kind="assume_role", role_arn=ROLE, base="ops")
    with pytest.raises(CloudError, match="base account ops"):
        Credentials(lambda: (account,), ("AKID", "key", None)).provider(account)


def test_the_temporary_key_is_replaced_before_it_expires() -> None:
    now = [time.time()]  # the clock the bot reads; STS answers in real unix time
    with (
        DbbrainEmulator(keys=KEYS) as emu,
        StsStandIn(KEYS, roles={ROLE: "prod"}, grant_to=[emu], lifetime=100) as sts,
    ):
        account = Account("prod", kind="assume_role", role_arn=ROLE)
        base = credential.Credential("AKIDBASE", "base-secret")
        role = AssumedRole(base, account, ("http", sts.netloc), clock=lambda: now[0])
        first = role.get_credential_info()
        expires = sts.issued[0]["ExpiredTime"]
        now[0] = expires - 21  # more than a fifth of its 100 s left: kept
        assert role.get_credential_info() == first and len(sts.issued) == 1
        now[0] = expires - 19  # less than a fifth left: replaced
        second = role.get_credential_info()
        assert second != first and len(sts.issued) == 2
        assert sts.calls_of("AssumeRole")[0].secret_id == "AKIDBASE"


def test_a_provider_that_finds_no_keys_is_said_plainly_not_signed_with() -> None:
    """The SDK's CVM role provider answers (None, None, None) when the metadata service has no
    role for the machine; signing with that would fail as an odd TypeError mid-call."""
    from types import SimpleNamespace

    account = Account("vm", kind="cvm_role")
    keys = Credentials(lambda: (account,), None)
    keys._providers[account] = SimpleNamespace(get_credential_info=lambda: (None, None, None))
    with pytest.raises(CloudError) as caught:
        keys.check(account)
    assert caught.value.code == "CredentialsMissing" and caught.value.action == "Credentials"
    assert "cvm_role keys could not be read" in caught.value.explain()
