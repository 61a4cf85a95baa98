"""The stand-ins' estate: regions and accounts in the DBbrain emulator, and the STS stand-in,
driven with Tencent's own SDK."""

from __future__ import annotations

import time

import pytest
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from standins.dbbrain import DbbrainEmulator
from standins.dbbrain.server import CloudApiServer
from standins.sts import StsStandIn
from tests.conftest import PROXY_VARS

KEYS = {"AKIDEMULATOR": "emulator-secret", "AKIDOTHER": "other-secret"}
ROLE = "qcs::cam::uin/100000000001:roleName/killtask"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def call(
    server: CloudApiServer, action: str, params: dict, region: str = "ap-guangzhou",
    keys: tuple[str, str, str | None] = ("AKIDEMULATOR", "emulator-secret", None),
) -> dict:  # fmt: skip
    http = HttpProfile(protocol="http", endpoint=server.netloc, reqTimeout=5)
    client = CommonClient(
        server.service, server.version, credential.Credential(*keys), region,
        ClientProfile(httpProfile=http),
    )  # fmt: skip
    return client.call_json(action, params)["Response"]


def code_of(server: CloudApiServer, action: str, params: dict, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(TencentCloudSDKException) as caught:
        call(server, action, params, **kw)
    return caught.value.get_code()


def test_an_instance_answers_only_in_its_own_region_and_account() -> None:
    with DbbrainEmulator(keys=KEYS, instances=[]) as emu:
        emu.key_accounts["AKIDOTHER"] = "other"
        emu.place("cdb-east", "ap-shanghai")
        params = {"InstanceId": "cdb-east", "Limit": 5}
        assert "ProcessList" in call(emu, "DescribeMySqlProcessList", params, "ap-shanghai")
        wrong = code_of(emu, "DescribeMySqlProcessList", params, region="ap-guangzhou")
        assert wrong == "ResourceNotFound"
        missing = code_of(emu, "CancelKillTask", {"InstanceId": "cdb-east"}, region="")
        assert missing == "MissingParameter"
        other = ("AKIDOTHER", "other-secret", None)
        assert (
            code_of(emu, "CancelKillTask", {"InstanceId": "cdb-east"}, region="ap-shanghai",
                    keys=other) == "ResourceNotFound"
        )  # fmt: skip


def test_the_instance_list_comes_in_pages_for_the_callers_account() -> None:
    with DbbrainEmulator(keys=KEYS, instances=[]) as emu:
        emu.key_accounts["AKIDOTHER"] = "other"
        for i in range(150):
            emu.place(f"cdb-{i:03d}", "ap-beijing" if i % 2 else "ap-shanghai", name=f"db {i}")
        emu.place("cdb-theirs", "ap-beijing", "other")
        ask = {"IsSupported": True, "Product": "mysql", "Limit": 100}
        first = call(emu, "DescribeDiagDBInstances", ask)
        assert first["TotalCount"] == 150 and len(first["Items"]) == 100
        assert {"InstanceId", "InstanceName", "Region", "HealthScore", "EventCount"} <= set(
            first["Items"][0]
        )
        rest = call(emu, "DescribeDiagDBInstances", ask | {"Offset": 100})
        assert len(rest["Items"]) == 50
        theirs = call(emu, "DescribeDiagDBInstances", ask, keys=("AKIDOTHER", "other-secret", None))
        assert [i["InstanceId"] for i in theirs["Items"]] == ["cdb-theirs"]
        assert call(emu, "DescribeDiagDBInstances", ask | {"Product": "cynosdb"})["Items"] == []


def test_sts_grants_keys_that_work_with_their_token_until_they_expire() -> None:
    with (
        DbbrainEmulator(keys=KEYS, instances=[]) as emu,
        StsStandIn(KEYS, roles={ROLE: "prod"}, grant_to=[emu], lifetime=2) as sts,
    ):
        emu.place("cdb-prod", "ap-beijing", "prod")
        params = {"RoleArn": ROLE, "RoleSessionName": "killtask", "DurationSeconds": 3600}
        answer = call(sts, "AssumeRole", params)
        keys = answer["Credentials"]
        assert answer["ExpiredTime"] <= time.time() + 2 and answer["Expiration"].endswith("Z")
        temporary = (keys["TmpSecretId"], keys["TmpSecretKey"], keys["Token"])
        cancel = {"InstanceId": "cdb-prod"}
        assert call(emu, "CancelKillTask", cancel, "ap-beijing", keys=temporary)["Status"] == 1
        no_token = (keys["TmpSecretId"], keys["TmpSecretKey"], None)
        code = code_of(emu, "CancelKillTask", cancel, region="ap-beijing", keys=no_token)
        assert code == "AuthFailure.TokenFailure"
        unknown = params | {"RoleArn": "qcs::cam::uin/1:roleName/none"}
        assert code_of(sts, "AssumeRole", unknown) == "InvalidParameter.RoleNotExist"
        while time.time() < answer["ExpiredTime"]:
            time.sleep(0.05)
        code = code_of(emu, "CancelKillTask", cancel, region="ap-beijing", keys=temporary)
        assert code == "AuthFailure.TokenFailure"
