"""The DBbrain emulator, driven by the real Tencent SDK, acts like DBbrain where the bot cares."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from tencentcloud.common import abstract_client, credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.dbbrain.v20210527 import dbbrain_client, models

from standins.dbbrain import DbbrainEmulator

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")
INSTANCE = "cdb-emu12345"

Client = Callable[..., dbbrain_client.DbbrainClient]


@pytest.fixture
def emulator() -> Iterator[DbbrainEmulator]:
    with DbbrainEmulator() as emu:
        yield emu


@pytest.fixture
def client(emulator: DbbrainEmulator, monkeypatch: pytest.MonkeyPatch) -> Client:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)

    def make(
        secret_id: str = "AKIDEMULATOR",
        secret_key: str = "emulator-secret",
        token: str | None = None,
        timeout: int = 5,
    ) -> dbbrain_client.DbbrainClient:
        endpoint = f"127.0.0.1:{emulator.port}"  # no scheme: it is sent and signed as Host
        http = HttpProfile(protocol="http", endpoint=endpoint, reqTimeout=timeout)
        cred = credential.Credential(secret_id, secret_key, token)
        return dbbrain_client.DbbrainClient(cred, "ap-guangzhou", ClientProfile(httpProfile=http))

    return make


def create(c: dbbrain_client.DbbrainClient, **params) -> models.CreateKillTaskResponse:
    req = models.CreateKillTaskRequest()
    req._deserialize({"InstanceId": INSTANCE, "Duration": 600, **params})
    return c.CreateKillTask(req)


def cancel(c: dbbrain_client.DbbrainClient) -> models.CancelKillTaskResponse:
    req = models.CancelKillTaskRequest()
    req.InstanceId = INSTANCE
    return c.CancelKillTask(req)


def sdk_error(fn: Callable[[], object]) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as info:
        fn()
    return info.value


def test_create_kill_task_arrives_with_exactly_its_filters(emulator, client):
    filters = {"Host": "10.0.0.5", "DB": "shop,crm", "Command": "Query", "User": "app"}
    resp = create(client(), Time=30, Infos=["SELECT", "orders"], **filters)

    assert resp.Status == 1
    assert resp.RequestId
    (call,) = emulator.calls_of("CreateKillTask")
    assert call.params == {"InstanceId": INSTANCE, "Duration": 600, "Time": 30,
                           "Infos": ["SELECT", "orders"], **filters}  # fmt: skip
    assert call.request_id == resp.RequestId
    assert call.secret_id == "AKIDEMULATOR"
    assert call.error_code is None and call.effect == "created"
    task = emulator.active_task(INSTANCE)
    assert task is not None and task["Duration"] == 600
    assert task["EndsAt"] == pytest.approx(time.time() + 600, abs=5)


def test_wrong_secret_key_is_refused(emulator, client):
    err = sdk_error(lambda: create(client(secret_key="not-the-secret")))
    assert err.code == "AuthFailure.SignatureFailure"
    assert err.requestId
    assert emulator.active_task(INSTANCE) is None
    assert emulator.calls_of("CreateKillTask") == []
    assert emulator.calls[0].signature_ok is False

    err = sdk_error(lambda: create(client(secret_id="AKIDUNKNOWN")))
    assert err.code == "AuthFailure.SecretIdNotFound"


def test_expired_timestamp_is_refused(emulator, client, monkeypatch):
    monkeypatch.setattr(abstract_client, "time", SimpleNamespace(time=lambda: time.time() - 400))
    err = sdk_error(lambda: create(client()))
    assert err.code == "AuthFailure.SignatureExpire"


def test_duplicate_task_on_the_same_instance_is_refused(emulator, client):
    c = client()
    create(c)
    err = sdk_error(lambda: create(c, Duration=-1))
    assert err.code == "UnsupportedOperation.HasDuplicatedTask"
    assert len(emulator.tasks) == 1
    assert create(c, Product="cynosdb").Status == 1  # another product is another task


def test_cancel_ends_the_task_and_succeeds_without_one(emulator, client):
    c = client()
    create(c, Duration=-1)
    assert emulator.active_task(INSTANCE)["EndsAt"] is None

    assert cancel(c).Status == 1
    assert emulator.active_task(INSTANCE) is None
    assert cancel(c).Status == 1  # DBbrain says success even with nothing to cancel
    effects = [x.effect for x in emulator.calls_of("CancelKillTask")]
    assert effects == ["cancelled", "nothing-active"]
    assert create(c).Status == 1


def test_an_elapsed_task_is_no_longer_active(emulator, client):
    create(client(), Duration=1)
    assert emulator.active_task(INSTANCE) is not None
    time.sleep(1.1)
    assert emulator.active_task(INSTANCE) is None


def test_scripted_rate_limit_is_raised_and_has_no_effect(emulator, client):
    emulator.script("CreateKillTask", {"error": "RequestLimitExceeded", "message": "slow down"})
    c = client()
    err = sdk_error(lambda: create(c))
    assert (err.code, err.message) == ("RequestLimitExceeded", "slow down")
    assert emulator.active_task(INSTANCE) is None
    assert emulator.calls_of("CreateKillTask")[0].error_code == "RequestLimitExceeded"

    assert create(c).Status == 1  # the script is used up
    assert len(emulator.tasks) == 1


def test_scripted_http_502_is_a_server_network_error(emulator, client):
    emulator.script("CreateKillTask", {"http_status": 502, "body": "bad gateway"})
    err = sdk_error(lambda: create(client()))
    assert err.code == "ServerNetworkError"
    assert "bad gateway" in str(err.message)
    assert emulator.active_task(INSTANCE) is None


def test_scripted_raw_body_is_not_an_sdk_error_code(emulator, client):
    emulator.script("CreateKillTask", {"raw": "this is not json"})
    err = sdk_error(lambda: create(client()))
    assert err.code == "JSONDecodeError"  # the SDK wraps json.loads' failure by class name


def test_dropped_connection_after_the_task_was_created(emulator, client):
    emulator.script("CreateKillTask", {"drop": True})
    err = sdk_error(lambda: create(client()))
    assert err.code == "ClientNetworkError"
    assert emulator.active_task(INSTANCE) is not None


def test_slow_answer_times_out_but_the_task_is_created(emulator, client):
    emulator.script("CreateKillTask", {"delay": 2.0})
    err = sdk_error(lambda: create(client(timeout=1)))
    assert err.code == "ClientNetworkError"
    emulator.wait_for_calls("CreateKillTask", 1, timeout=5)
    assert emulator.active_task(INSTANCE) is not None


def test_describe_process_list_filters_set_rows(emulator, client):
    fields = ("ID", "User", "Host", "DB", "State", "Command", "Time", "Info", "SqlType")
    rows = [
        (1, "app", "10.0.0.5:5000", "shop", "Sending", "Query", 120, "SELECT a FROM orders", ""),
        (2, "app", "10.0.0.6:5001", "shop", "", "Sleep", 5, None, ""),
        (3, "etl", "10.0.0.7:5002", "dw", "Sending data", "Query", 900, "SELECT 1 FROM orders", ""),
    ]
    emulator.set_process_list(INSTANCE, [dict(zip(fields, row, strict=True)) for row in rows])
    c = client()

    def describe(**params) -> list[models.MySqlProcess]:
        req = models.DescribeMySqlProcessListRequest()
        req._deserialize({"InstanceId": INSTANCE, **params})
        return c.DescribeMySqlProcessList(req).ProcessList

    (only,) = describe(User="app", Time=60)
    assert (only.ID, only.Time, only.Info) == ("1", "120", "SELECT a FROM orders")
    assert [p.ID for p in describe(Info="FROM orders")] == ["1", "3"]
    assert [p.ID for p in describe(Command="Query", Limit=1)] == ["1"]
    assert [p.ID for p in describe()] == ["1", "2", "3"]
    assert describe()[1].Info == ""


def test_session_token_is_sent_as_x_tc_token(emulator, client):
    create(client(token="session-token-123"))
    (call,) = emulator.calls_of("CreateKillTask")
    assert call.headers["X-TC-Token"] == "session-token-123"
    assert call.token == "session-token-123"


@pytest.mark.parametrize(
    ("action", "params", "code"),
    [
        ("CreateKillTask", {"InstanceId": INSTANCE}, "MissingParameter"),
        ("CreateKillTask", {"InstanceId": INSTANCE, "Duration": 0}, "InvalidParameterValue"),
        ("CreateKillTask", {"InstanceId": INSTANCE, "Duration": "60"}, "InvalidParameterValue"),
        ("CreateKillTask", {"InstanceId": INSTANCE, "Duration": 9, "Product": "redis"},
            "InvalidParameterValue"),
        ("CreateKillTask", {"InstanceId": INSTANCE, "Duration": 9, "Info": "a", "Infos": ["b"]},
            "InvalidParameter"),
        ("CreateKillTask", {"InstanceId": INSTANCE, "Duration": 9, "Bogus": 1}, "UnknownParameter"),
        ("CancelKillTask", {}, "MissingParameter"),
        ("KillEverything", {"InstanceId": INSTANCE}, "InvalidAction"),
    ],
)  # fmt: skip
def test_invalid_requests_are_refused(emulator, client, action, params, code):
    err = sdk_error(lambda: client().call(action, params))
    assert err.code == code
    assert emulator.tasks == []


def test_allow_list_of_instances(client, emulator):
    emulator.instances = {"cdb-known"}
    err = sdk_error(lambda: create(client()))
    assert err.code == "ResourceNotFound"


def test_wait_for_calls_explains_a_timeout(emulator):
    with pytest.raises(AssertionError, match="expected 1 signed CancelKillTask"):
        emulator.wait_for_calls("CancelKillTask", 1, timeout=0.2)


def test_reset_forgets_calls_scripts_and_tasks(emulator, client):
    emulator.script("CancelKillTask", {"error": "InternalError"})
    create(client())
    emulator.reset()
    assert (emulator.calls, emulator.tasks) == ([], [])
    assert cancel(client()).Status == 1
