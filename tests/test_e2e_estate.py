"""End to end: instances in two regions and two accounts, one assumed through the STS stand-in.

The DBbrain emulator here knows only the instances placed in it (an allow-list), refuses a call
whose X-TC-Region is not the instance's own, and accepts a temporary key only with its token
and before it expires.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from standins.dbbrain import DbbrainEmulator
from standins.slack_api import FakeSlack
from standins.sts import StsStandIn
from tests.conftest import (
    APPROVER,
    POLICY,
    PROXY_VARS,
    REQUESTER,
    SECRET_ID,
    SECRET_KEY,
    Driver,
    card_text,
    start_bot,
)

pytestmark = pytest.mark.e2e

PROD_ROLE = "qcs::cam::uin/100000000001:roleName/killtask"
LOCKED_ROLE = "qcs::cam::uin/100000000002:roleName/killtask"
LIFETIME = 4  # seconds each temporary key lives, so a refresh happens within the test

ESTATE_POLICY = (
    POLICY
    + f"""
accounts:
  - name: prod
    instances: ["cdb-prod-*"]
    credentials: {{assume_role: {{role_arn: "{PROD_ROLE}", session_name: killtask,
                                 duration_seconds: 3600}}}}
  - name: locked
    instances: ["cdb-locked-*"]
    credentials: {{assume_role: {{role_arn: "{LOCKED_ROLE}"}}}}
  - name: default
    instances: ["*"]
    credentials: env
regions:
  "cdb-locked-*": ap-shanghai-fsi
"""
)

ROWS = [{"ID": 11, "User": "app", "Host": "10.0.0.7:5000", "Command": "Query", "Time": 40,
         "State": "executing", "DB": "orders", "Info": "SELECT 1"}]  # fmt: skip


# Placed before the bot starts, so its first read of the instance lists finds them.
CATALOG = (
    ("cdb-catalog-a1", "orders-primary", "ap-shanghai", "default", "mysql"),
    ("cdb-catalog-b2", "billing", "ap-guangzhou", "default", "mysql"),
    ("cynosdbmysql-catalog1", "analytics", "ap-beijing", "default", "cynosdb"),
    ("cdb-prod-catalog", "prod-orders", "ap-beijing", "prod", "mysql"),
)


@pytest.fixture(scope="module")
def estate_dbbrain() -> DbbrainEmulator:
    with DbbrainEmulator(keys={SECRET_ID: SECRET_KEY}, instances=[]) as emulator:
        for instance, name, region, account, product in CATALOG:
            emulator.place(instance, region, account, name=name, product=product, health_score=92)
            emulator.set_process_list(instance, ROWS)
        yield emulator


@pytest.fixture(scope="module")
def sts(estate_dbbrain: DbbrainEmulator) -> StsStandIn:
    roles = {PROD_ROLE: "prod"}
    with StsStandIn(
        {SECRET_ID: SECRET_KEY}, roles=roles, grant_to=[estate_dbbrain], lifetime=LIFETIME
    ) as stand_in:
        yield stand_in


@pytest.fixture(scope="module")
def estate_bot(tmp_path_factory, slack: FakeSlack, estate_dbbrain, sts):  # type: ignore[no-untyped-def]
    import os

    for name in PROXY_VARS:
        os.environ.pop(name, None)
    process = start_bot(
        tmp_path_factory.mktemp("estate"), slack, estate_dbbrain, ESTATE_POLICY,
        TENCENTCLOUD_STS_ENDPOINT=sts.endpoint,
    )  # fmt: skip
    yield process
    process.stop()


@pytest.fixture(name="driver")
def estate_driver(estate_bot, slack: FakeSlack, estate_dbbrain: DbbrainEmulator) -> Driver:  # type: ignore[no-untyped-def]
    return Driver(estate_bot, slack, estate_dbbrain)


def placed(dbbrain: DbbrainEmulator, prefix: str, region: str, account: str = "default") -> str:
    instance = f"{prefix}{uuid.uuid4().hex[:8]}"
    dbbrain.place(instance, region, account, name=f"orders {instance[-4:]}", health_score=87)
    dbbrain.set_process_list(instance, ROWS)
    return instance


def wait_text(driver: Driver, card, contains: str) -> str:  # type: ignore[no-untyped-def]
    """The card's text once it shows `contains` (the preview arrives after the card)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = card_text(driver.slack.message(card.channel, card.ts) or {})
        if contains in text:
            return text
        time.sleep(0.05)
    raise AssertionError(f"card never showed {contains!r}: {text}")


def calls_about(dbbrain: DbbrainEmulator, instance: str) -> list:
    return [c for c in dbbrain.calls if c.params.get("InstanceId") == instance]


def test_every_call_carries_the_instances_own_region(driver: Driver) -> None:
    east = placed(driver.dbbrain, "cdb-", "ap-shanghai")
    south = placed(driver.dbbrain, "cdb-", "ap-guangzhou")
    for instance, region in ((east, "ap-shanghai"), (south, "ap-guangzhou")):
        card = driver.file(instance)
        driver.wait_card(card, "Waiting for approval")
        assert f"`default` · `{region}`" in wait_text(driver, card, "right now")
        driver.command("list")
        listed = driver.ephemeral_to(REQUESTER, f"{instance}`")
        assert f"`default` · `{region}`" in listed.args["text"]
        driver.click("approve", card, APPROVER)
        driver.wait_card(card, "Running")
        driver.click("stop", card, APPROVER)
        driver.wait_card(card, "Stopped")
        calls = calls_about(driver.dbbrain, instance)
        actions = {c.action for c in calls}
        assert {"CreateKillTask", "CancelKillTask", "DescribeMySqlProcessList"} <= actions
        assert all(c.headers.get("X-TC-Region") == region for c in calls), [
            (c.action, c.headers.get("X-TC-Region")) for c in calls
        ]
        assert all(c.error_code is None for c in calls)
    # The lookup asked DBbrain's instance list, in ap-guangzhou as its docs say.
    lookups = driver.dbbrain.calls_of("DescribeDiagDBInstances")
    assert lookups and all(c.headers.get("X-TC-Region") == "ap-guangzhou" for c in lookups)


def test_an_instance_no_account_lists_is_refused_before_filing(driver: Driver) -> None:
    instance = f"cdb-nowhere{uuid.uuid4().hex[:6]}"
    driver.command(f"{instance} duration=10m user=app")
    answer = driver.ephemeral_to(REQUESTER, instance)
    assert "is not an instance DBbrain lists" in answer.args["text"]
    assert "nothing was filed" in answer.args["text"]
    posts = driver.slack.calls_of("chat.postMessage")
    assert not [c for c in posts if f" on {instance}:" in c.args.get("text", "")]
    assert not calls_about(driver.dbbrain, instance)


def test_an_assumed_account_uses_its_own_keys_and_refreshes_them(
    driver: Driver, sts: StsStandIn
) -> None:
    prod = placed(driver.dbbrain, "cdb-prod-", "ap-beijing", account="prod")
    card = driver.file(prod)
    pending = driver.wait_card(card, "Waiting for approval")
    assert "`prod` · `ap-beijing`" in card_text(pending)
    driver.click("approve", card, APPROVER)
    driver.wait_card(card, "Running")
    (create,) = [c for c in calls_about(driver.dbbrain, prod) if c.action == "CreateKillTask"]
    issued = {key["TmpSecretId"]: key for key in sts.issued}
    assert create.secret_id in issued and create.token == issued[create.secret_id]["Token"]
    assert create.headers["X-TC-Region"] == "ap-beijing"
    # STS was called with the base keys, signed for service "sts".
    assumes = sts.calls_of("AssumeRole")
    assert assumes and all(c.secret_id == SECRET_ID for c in assumes)
    assert assumes[0].params["RoleArn"] == PROD_ROLE
    # After the key's expiry, the next call uses a fresh one.
    first_expiry = issued[create.secret_id]["ExpiredTime"]
    while time.time() <= first_expiry:
        time.sleep(0.1)
    driver.click("stop", card, APPROVER)
    driver.wait_card(card, "Stopped")
    (cancel,) = [c for c in calls_about(driver.dbbrain, prod) if c.action == "CancelKillTask"]
    issued = {key["TmpSecretId"]: key for key in sts.issued}
    assert cancel.secret_id in issued and cancel.secret_id != create.secret_id
    assert issued[cancel.secret_id]["ExpiredTime"] > first_expiry
    assert cancel.error_code is None
    # The other account still signs with its own static key.
    south = placed(driver.dbbrain, "cdb-", "ap-guangzhou")
    driver.file(south)
    driver.dbbrain.wait_for_calls("DescribeMySqlProcessList", 1)
    assert all(c.secret_id == SECRET_ID for c in calls_about(driver.dbbrain, south))
    # Temporary keys and tokens never reach the log, the store or Slack.
    log = driver.bot.log()
    database = Path(driver.bot.env["DATABASE_URL"].removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    sent = json.dumps([c.args for c in driver.slack.calls])
    for key in sts.issued:
        for secret in (key["TmpSecretKey"], key["Token"]):
            assert secret not in log and secret.encode() not in stored and secret not in sent


def test_a_refused_assume_role_is_shown_and_asked_again_on_the_next_action(
    driver: Driver, sts: StsStandIn
) -> None:
    locked = placed(driver.dbbrain, "cdb-locked-", "ap-shanghai-fsi", account="locked")

    def refused() -> int:
        return len([c for c in sts.calls if c.params.get("RoleArn") == LOCKED_ROLE])

    # The bot's first read of every account's instance list (at start, then every few
    # minutes) asked once already; wait for it, then count what each action adds.
    while refused() < 1:
        time.sleep(0.05)
    base = refused()
    card = driver.file(locked)  # the region is pinned by the policy: no lookup
    text = wait_text(driver, card, "STS refused")
    assert "InvalidParameter.RoleNotExist" in text
    assert refused() == base + 1
    driver.click("approve", card, APPROVER)
    failed = driver.wait_card(card, "Failed")
    assert "InvalidParameter.RoleNotExist" in card_text(failed)
    after = refused()
    assert after > base + 1  # the approval asked again (a fresh preview, then the start)
    assert not calls_about(driver.dbbrain, locked)  # nothing reached DBbrain
    # No loop: a few ticks later STS has not been asked again.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        time.sleep(0.1)
    assert refused() == after
    # Once the role can be assumed, the next action works.
    sts.roles[LOCKED_ROLE] = "locked"
    again = driver.file(placed(driver.dbbrain, "cdb-locked-", "ap-shanghai-fsi", "locked"))
    text = wait_text(driver, again, "right now")
    assert "STS refused" not in text and "`locked` · `ap-shanghai-fsi`" in text
    assert refused() > after
