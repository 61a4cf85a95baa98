"""End to end: the form's live instance list (block_suggestion) and the message shortcut.

It reuses the estate module's stand-ins: instances in several regions and two accounts.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import APPROVER, CHANNEL, OTHER_CHANNEL, REQUESTER, STRANGER, Driver

# The estate module's stand-ins and bot (fixtures), started afresh for this module.
from tests.test_e2e_estate import estate_bot, estate_dbbrain, estate_driver, sts  # noqa: F401

pytestmark = pytest.mark.e2e

METADATA = json.dumps({"channel_id": CHANNEL})


def options(driver: Driver, user: str, typed: str = "") -> list[dict]:
    status, _, answer = driver.sender.suggest(
        "instance", "instance_id", typed, user_id=user, private_metadata=METADATA
    )
    assert status == 200, answer
    return answer["options"]


def listed(driver: Driver, user: str, typed: str = "") -> list[str]:
    """The IDs offered, once the bot's first read of the instance lists is in."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [o["value"] for o in options(driver, APPROVER)]
        if "cdb-prod-catalog" in found and "cdb-catalog-a1" in found:
            break
        time.sleep(0.1)
    return [o["value"] for o in options(driver, user, typed)]


def test_the_instance_list_is_filtered_by_role_and_typed_text(driver: Driver) -> None:
    everything = listed(driver, APPROVER)
    assert {"cdb-catalog-a1", "cdb-catalog-b2", "cynosdbmysql-catalog1", "cdb-prod-catalog"} <= set(
        everything
    )
    # The on-call role covers cdb-* with MySQL only: no CynosDB instance.
    mine = listed(driver, REQUESTER)
    assert "cynosdbmysql-catalog1" not in mine and "cdb-catalog-b2" in mine
    assert "cdb-prod-catalog" in mine  # from the assumed account too
    assert listed(driver, STRANGER) == []
    assert listed(driver, REQUESTER, "BILL") == ["cdb-catalog-b2"]  # by name
    assert listed(driver, REQUESTER, "catalog-a") == ["cdb-catalog-a1"]  # by ID
    (option,) = [o for o in options(driver, REQUESTER, "orders-primary")]
    assert option["text"]["text"] == "orders-primary · cdb-catalog-a1 · ap-shanghai · health 92"
    assert len(everything) <= 100


def submit(driver: Driver, view: dict, instance: str, view_id: str, user: str = REQUESTER):  # type: ignore[no-untyped-def]
    values = {
        "instance_id": {
            "instance": {"type": "external_select", "selected_option": {"value": instance}}
        },
        "product": {"value": {"type": "static_select", "selected_option": {"value": "mysql"}}},
        "duration": {"value": {"type": "static_select", "selected_option": {"value": "600"}}},
        "user": {"value": {"type": "plain_text_input", "value": "app"}},
        "reason": {"value": {"type": "plain_text_input", "value": "alert fired"}},
    }
    return driver.sender.submit_view(
        "killtask_file",
        values,
        user_id=user,
        private_metadata=view["private_metadata"],
        view_id=view_id,
    )


def open_from(driver: Driver, text: str, trigger: str, channel: str = CHANNEL) -> dict:
    ts = f"{int(time.time())}.{len(trigger):06d}"
    status, body, _ = driver.sender.shortcut(
        "killtask_from_message", text, user_id=REQUESTER, channel_id=channel,
        trigger_id=trigger, message_ts=ts,
    )  # fmt: skip
    assert status == 200, body
    opened = driver.slack.wait_for("views.open", lambda c: c.args.get("trigger_id") == trigger)
    view = opened.args["view"]
    assert json.loads(view["private_metadata"]) == {"channel_id": channel, "thread_ts": ts}
    return view


def picker(view: dict) -> dict:
    (block,) = [b for b in view["blocks"] if b.get("block_id") == "instance_id"]
    return block["element"]


def test_the_shortcut_fills_in_the_alerts_instance_and_links_the_card(driver: Driver) -> None:
    alert = "ALERT too many connections on cdb-catalog-a1 (orders-primary), 1800 threads"
    view = open_from(driver, alert, "trigger-shortcut-1")
    element = picker(view)
    assert element["type"] == "external_select"
    assert element["initial_option"]["value"] == "cdb-catalog-a1"
    status, body, _ = submit(driver, view, "cdb-catalog-a1", "V0SHORT1")
    assert status == 200 and body == ""
    card = driver.card_posted("cdb-catalog-a1")
    assert card.channel == CHANNEL
    thread_ts = json.loads(view["private_metadata"])["thread_ts"]
    reply = driver.slack.wait_for(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == thread_ts
    )
    text = reply.args["text"]
    assert f"request #{card.request_id}" in text and "cdb-catalog-a1" in text
    assert f"https://test.slack.com/archives/{CHANNEL}/p{card.ts.replace('.', '')}" in text
    assert reply.args["channel"] == CHANNEL


def test_the_shortcut_on_a_message_without_an_instance_opens_an_empty_form(
    driver: Driver,
) -> None:
    view = open_from(driver, "Disk usage is high on the reporting host", "trigger-shortcut-2")
    assert "initial_option" not in picker(view)


def test_the_shortcut_keeps_the_policys_channel_rules(driver: Driver) -> None:
    view = open_from(driver, "cdb-catalog-b2 is slow", "trigger-shortcut-3", OTHER_CHANNEL)
    status, body, _ = submit(driver, view, "cdb-catalog-b2", "V0SHORT3")
    assert status == 200 and body == ""
    assert "`channels` list" in driver.ephemeral_to(REQUESTER, "channel").args["text"]
    posts = driver.slack.calls_of("chat.postMessage")
    assert not [c for c in posts if " on cdb-catalog-b2:" in c.args.get("text", "")]
