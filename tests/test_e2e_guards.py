"""End to end: every refusal the core flow promises, against the real bot process."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from standins.slack_client import action_body, command_body
from tests.conftest import (
    APPROVER,
    APPROVER2,
    CHANNEL,
    COMMANDER,
    OTHER_CHANNEL,
    REQUESTER,
    STRANGER,
    Driver,
    buttons,
    card_text,
    new_instance,
)

pytestmark = pytest.mark.e2e


def creates_for(driver: Driver, instance: str) -> list:
    return [
        c for c in driver.dbbrain.calls_of("CreateKillTask") if c.params["InstanceId"] == instance
    ]


def db_path(driver: Driver) -> Path:
    return Path(driver.bot.env["DATABASE_URL"].removeprefix("sqlite:///"))


def audit(driver: Driver, request_id: int | None = None) -> list[tuple]:
    with sqlite3.connect(db_path(driver)) as conn:
        if request_id is None:
            return conn.execute(
                "SELECT actor_id, action, outcome, detail FROM audit_log"
            ).fetchall()
        return conn.execute(
            "SELECT actor_id, action, outcome, detail FROM audit_log WHERE request_id = ?",
            (request_id,),
        ).fetchall()


def test_self_approval_is_refused(driver: Driver) -> None:
    instance = new_instance()
    card = driver.file(instance, user=APPROVER)
    driver.click("approve", card, APPROVER)
    reply = driver.ephemeral_to(APPROVER, "you filed this request")
    assert "another approver" in reply.args["text"]
    assert driver.card_state(card) == "Waiting for approval"
    assert creates_for(driver, instance) == []
    assert (APPROVER, "approve", "denied") in [row[:3] for row in audit(driver, card.request_id)]


def test_requester_role_cannot_approve(driver: Driver) -> None:
    card = driver.file(new_instance(), user=APPROVER)
    driver.click("approve", card, REQUESTER)
    reply = driver.ephemeral_to(REQUESTER, "none of your roles (oncall) allows `approve`")
    assert reply.args["channel"] == CHANNEL
    assert driver.card_state(card) == "Waiting for approval"


def test_non_member_is_refused_everything(driver: Driver) -> None:
    instance = new_instance()
    driver.command(f"{instance} duration=5m user=app", user=STRANGER)
    driver.ephemeral_to(STRANGER, "you are not a member of any role")
    card = driver.file(new_instance())
    driver.click("approve", card, STRANGER)
    driver.ephemeral_to(STRANGER, "not a member of any role")
    assert driver.card_state(card) == "Waiting for approval"
    assert any(row[:3] == (STRANGER, "request", "denied") for row in audit(driver))


def test_wrong_channel_is_refused(driver: Driver) -> None:
    driver.command(f"{new_instance()} duration=5m user=app", channel=OTHER_CHANNEL)
    reply = driver.ephemeral_to(REQUESTER, "`channels` list")
    assert reply.args["channel"] == OTHER_CHANNEL


def test_instance_outside_role_patterns_is_refused(driver: Driver) -> None:
    driver.command("cynosdbmysql-ins-abc123 duration=5m user=app")
    driver.ephemeral_to(REQUESTER, "covers only instances matching cdb-*")


def test_duration_above_cap_is_refused(driver: Driver) -> None:
    driver.command(f"{new_instance()} duration=2h user=app")
    driver.ephemeral_to(REQUESTER, "allows at most 3600 s per task")
    driver.command(f"{new_instance()} duration=until-stopped user=app")
    driver.ephemeral_to(REQUESTER, "not until-stopped")


def test_filterless_request_needs_kill_all(driver: Driver) -> None:
    driver.command(f"{new_instance()} duration=5m")
    driver.ephemeral_to(REQUESTER, "needs `kill_all` because it has no filter")
    instance = new_instance()
    driver.command(f"{instance} duration=5m", user=COMMANDER)
    card = driver.card_posted(instance)
    text = card_text(driver.wait_card(card, "Waiting for approval"))
    assert "EVERY session on the instance" in text
    assert "Wide request" in text
    # an approver without kill_all may not approve it either
    driver.click("approve", card, APPROVER)
    driver.ephemeral_to(APPROVER, "needs `kill_all`")
    assert creates_for(driver, instance) == []


def test_forged_stale_and_unsigned_requests_get_401(driver: Driver) -> None:
    instance = new_instance()
    body = command_body(f"{instance} duration=5m user=app", user_id=COMMANDER, channel_id=CHANNEL)
    status, _, _ = driver.sender.post(
        body, headers_override={"X-Slack-Signature": "v0=" + "0" * 64}
    )
    assert status == 401
    status, _, _ = driver.sender.post(body, timestamp=int(time.time()) - 6 * 60)
    assert status == 401
    status, _, _ = driver.sender.post(
        body, headers_override={"X-Slack-Signature": "", "X-Slack-Request-Timestamp": ""}
    )
    assert status == 401
    card = driver.file(new_instance())
    click = action_body("approve", str(card.request_id), user_id=APPROVER, channel_id=CHANNEL,
                        message_ts=card.ts)  # fmt: skip
    status, _, _ = driver.sender.post(click, headers_override={"X-Slack-Signature": "v0=bad"})
    assert status == 401
    time.sleep(0.5)
    assert not [c for c in driver.slack.calls_of("chat.postMessage") if instance in str(c.args)]
    assert driver.card_state(card) == "Waiting for approval"


def test_double_click_and_slack_retry_give_one_kill_task(driver: Driver) -> None:
    instance = new_instance()
    card = driver.file(instance)
    results: list[int] = []

    def click(user: str) -> None:
        results.append(driver.click("approve", card, user))

    threads = [threading.Thread(target=click, args=(u,)) for u in (APPROVER, APPROVER2) * 5]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    driver.sender.click("approve", str(card.request_id), user_id=APPROVER, channel_id=CHANNEL,
                        message_ts=card.ts, retry_num=1)  # fmt: skip
    driver.wait_card(card, "Running")
    time.sleep(0.5)
    assert results == [200] * 10
    assert len(creates_for(driver, instance)) == 1
    assert len([t for t in driver.thread(card) if "approved; started" in t]) == 1


def test_retried_command_files_once(driver: Driver) -> None:
    instance = new_instance()
    for retry in (None, 1, 2):
        driver.command(f"{instance} duration=5m user=app", trigger_id="trigger-retry-1",
                       retry_num=retry)  # fmt: skip
    driver.card_posted(instance)
    time.sleep(0.5)
    cards = [
        c for c in driver.slack.calls_of("chat.postMessage")
        if f" on {instance}:" in c.args.get("text", "") and not c.args.get("thread_ts")
    ]  # fmt: skip
    assert len(cards) == 1


def test_reject_ends_it_and_late_clicks_change_nothing(driver: Driver) -> None:
    instance = new_instance()
    card = driver.file(instance)
    driver.click("reject", card, APPROVER)
    rejected = driver.wait_card(card, "Rejected")
    assert buttons(rejected) == [] and f"<@{APPROVER}>" in card_text(rejected)
    driver.wait_thread(card, f"<@{APPROVER}> rejected")
    driver.click("approve", card, APPROVER2)
    driver.ephemeral_to(APPROVER2, "already rejected; nothing was changed")
    assert driver.card_state(card) == "Rejected"
    assert creates_for(driver, instance) == []


def test_tampered_or_foreign_button_is_refused(driver: Driver) -> None:
    instance = new_instance()
    card = driver.file(instance)
    # the same request id clicked from another channel's message
    driver.click("approve", card, APPROVER, channel=OTHER_CHANNEL)
    driver.ephemeral_to(APPROVER, "does not match a request of this channel")
    # a request id that does not exist, and one that is not a number
    driver.sender.click(
        "approve", "999999", user_id=APPROVER, channel_id=CHANNEL, message_ts=card.ts
    )
    driver.sender.click("approve", "1 OR 1=1", user_id=APPROVER2, channel_id=CHANNEL,
                        message_ts=card.ts)  # fmt: skip
    driver.ephemeral_to(APPROVER2, "does not match a request of this channel")
    assert driver.card_state(card) == "Waiting for approval"
    assert creates_for(driver, instance) == []


def test_list_shows_pending_and_running(driver: Driver) -> None:
    pending = new_instance()
    running = new_instance()
    driver.file(pending)
    card = driver.file(running)
    driver.click("approve", card, APPROVER)
    driver.wait_card(card, "Running")
    driver.command("list")
    reply = driver.ephemeral_to(REQUESTER, "Open kill tasks in this channel")
    assert f"`{pending}` · Waiting for approval" in reply.args["text"]
    assert f"`{running}` · Running" in reply.args["text"]
    driver.command("list", user=STRANGER)
    driver.ephemeral_to(STRANGER, "not a member of any role")


def test_stop_command_and_permissions(driver: Driver) -> None:
    instance = new_instance()
    card = driver.file(instance)
    driver.click("approve", card, APPROVER)
    driver.wait_card(card, "Running")
    driver.command(f"stop {instance}")  # REQUESTER's role has no `stop`
    driver.ephemeral_to(REQUESTER, "allows `stop`")
    assert driver.card_state(card) == "Running"
    driver.command(f'stop {instance} reason="storm is over"', user=APPROVER)
    stopped = driver.wait_card(card, "Stopped")
    assert f"<@{APPROVER}>" in card_text(stopped)
    driver.wait_thread(card, "storm is over")
    assert driver.dbbrain.active_task(instance) is None


def test_one_task_per_instance(driver: Driver) -> None:
    instance = new_instance()
    card = driver.file(instance)
    driver.click("approve", card, APPROVER)
    driver.wait_card(card, "Running")
    driver.command(f"{instance} duration=5m user=other")
    driver.ephemeral_to(REQUESTER, f"request #{card.request_id}")


def test_finished_and_expired_cards(driver: Driver) -> None:
    instance = new_instance()
    card = driver.file(instance, filters="duration=1 user=app")
    driver.click("approve", card, APPROVER)
    finished = driver.wait_card(card, "Finished")
    assert buttons(finished) == []
    pending = driver.file(new_instance())
    with sqlite3.connect(db_path(driver)) as conn:  # let 30 minutes pass for this request
        conn.execute("UPDATE kill_requests SET expires_at = 0 WHERE id = ?", (pending.request_id,))
    expired = driver.wait_card(pending, "Expired")
    assert buttons(expired) == []
    driver.wait_thread(pending, "expired")
    time.sleep(0.6)  # several ticks later, still one post
    assert len([t for t in driver.thread(pending) if "expired" in t]) == 1
    driver.click("approve", pending, APPROVER)
    driver.ephemeral_to(APPROVER, "already expired")
