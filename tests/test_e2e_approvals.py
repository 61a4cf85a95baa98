"""End to end: approvals that reach the right people. Mentions on filing, one reminder and one
escalation, stricter rules for riskier requests (with `from`), the "still running" reminder,
and the requester's direct messages, through the real bot."""

from __future__ import annotations

import sqlite3
import time
import uuid

import pytest

from standins.dbbrain import DbbrainEmulator
from standins.slack_api import FakeSlack
from tests.conftest import (
    APPROVER,
    APPROVER2,
    CHANNEL,
    COMMANDER,
    REQUESTER,
    BotProcess,
    Card,
    Driver,
    card_text,
    new_instance,
    start_bot,
)

pytestmark = pytest.mark.e2e

LEAD = "U0LEAD"  # may approve, but is not in S0DBA

POLICY = f"""
channels: [{CHANNEL}]
approval:
  required: 1
  expires_after_minutes: 30
  notify: [S0DBA]
  remind_after_minutes: 0.02
  escalate_after_minutes: 0.04
  escalate_to: [{COMMANDER}]
  rules:
    - when: {{instances: ["cdb-prod-*"]}}
      required: 2
    - when: {{until_stopped: true}}
      required: 1
      from: [S0DBA]
    - when: {{products: [cynosdb]}}
      required: 3
    - when: {{kill_all: true}}
      required: 2
    - when: {{min_duration: 1800}}
      required: 2
    - when: {{once: true, instances: ["cdb-once-*"]}}
      required: 2
running:
  remind_every_minutes: 0.02
roles:
  oncall:
    members: [{REQUESTER}]
    allow: [request, preview]
    instances: ["cdb-*"]
    products: [mysql]
    max_duration: 3600
  dba:
    members: [S0DBA]
    allow: [request, approve, reject, stop, preview]
    max_duration: -1
  lead:
    members: [{LEAD}]
    allow: [approve, reject, stop]
    max_duration: -1
  commander:
    members: [{COMMANDER}]
    allow: [request, approve, reject, stop, preview, kill_all, break_glass]
    max_duration: -1
"""


@pytest.fixture(scope="module")
def rules_bot(tmp_path_factory: pytest.TempPathFactory, slack: FakeSlack, dbbrain: DbbrainEmulator):
    process = start_bot(tmp_path_factory.mktemp("rules"), slack, dbbrain, POLICY)
    yield process
    process.stop()


@pytest.fixture
def d(rules_bot: BotProcess, slack: FakeSlack, dbbrain: DbbrainEmulator) -> Driver:
    return Driver(rules_bot, slack, dbbrain)


def directs(d: Driver, user: str, request_id: int) -> list[str]:
    return [
        c.args.get("text", "")
        for c in d.slack.calls_of("chat.postMessage")
        if c.args.get("channel") == user and f"request #{request_id} " in c.args.get("text", "")
    ]


def wait_direct(d: Driver, user: str, request_id: int, contains: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for text in directs(d, user, request_id):
            if contains in text:
                return text
        time.sleep(0.05)
    raise AssertionError(f"no direct message with {contains!r}: {directs(d, user, request_id)}")


def pending_text(d: Driver, card: Card) -> str:
    return card_text(d.wait_card(card, "Waiting for approval"))


def test_filing_mentions_notify_then_one_reminder_and_one_escalation(d: Driver) -> None:
    card = d.file(new_instance())
    filed = d.wait_thread(card, "asks for a kill task")
    assert filed.startswith("<!subteam^S0DBA>: ") and f"<@{REQUESTER}>" in filed
    reminder = d.wait_thread(card, ":bell:")
    assert "<!subteam^S0DBA>" in reminder and "still waiting for 1 approval" in reminder
    escalation = d.wait_thread(card, ":rotating_light:")
    assert f"<@{COMMANDER}>" in escalation and "no decision" in escalation
    time.sleep(1.0)  # several more ticks
    thread = d.thread(card)
    assert len([t for t in thread if ":bell:" in t]) == 1
    assert len([t for t in thread if ":rotating_light:" in t]) == 1
    d.click("reject", card, REQUESTER)
    d.wait_card(card, "Rejected")


def test_instance_rule_needs_two_approvals(d: Driver) -> None:
    card = d.file(f"cdb-prod-{uuid.uuid4().hex[:8]}")
    text = pending_text(d, card)
    assert "Needs 2 more approvals from someone other than the requester" in text
    assert "rule: instances cdb-prod-*" in text
    d.click("approve", card, APPROVER)
    d.wait_thread(card, "Waiting for 1 more approval(s)")
    assert d.card_state(card) == "Waiting for approval"
    d.click("approve", card, APPROVER2)
    d.wait_card(card, "Running")
    d.click("stop", card, APPROVER)
    d.wait_card(card, "Stopped")


@pytest.mark.parametrize(
    ("user", "line", "required", "rule"),
    [
        (COMMANDER, "product=cynosdb duration=10m user=app", 3, "products cynosdb"),
        (COMMANDER, "duration=10m", 2, "wide requests"),
        (REQUESTER, "duration=45m user=app", 2, "at least 1800 s"),
    ],
)
def test_each_kind_of_rule_shows_on_the_card(
    d: Driver, user: str, line: str, required: int, rule: str
) -> None:
    card = d.file(new_instance(), line, user=user)
    text = pending_text(d, card)
    assert f"Needs {required} more approvals" in text and f"rule: {rule}" in text
    d.click("reject", card, user)
    d.wait_card(card, "Rejected")


def test_once_rule_matches_a_one_shot_kill_only(d: Driver) -> None:
    card = d.file(f"cdb-once-{uuid.uuid4().hex[:8]}", "duration=once user=app")
    assert "rule: instances cdb-once-* and a one-shot kill" in pending_text(d, card)
    task = d.file(f"cdb-once-{uuid.uuid4().hex[:8]}", "duration=10m user=app")
    assert "Needs 1 more approval" in pending_text(d, task) and "rule:" not in pending_text(d, task)
    d.click("reject", task, REQUESTER)
    d.click("reject", card, REQUESTER)
    d.wait_card(card, "Rejected")


def test_from_rule_refuses_an_outside_approval_then_running_reminder(d: Driver) -> None:
    instance = new_instance()
    card = d.file(instance, "duration=until-stopped user=app", user=COMMANDER)
    text = pending_text(d, card)
    # min_duration matches until-stopped too: every matching rule applies, the strictest wins
    assert "Needs 2 more approvals from <!subteam^S0DBA>" in text
    assert "rule: until stopped; at least 1800 s" in text
    d.click("approve", card, LEAD)
    refused = d.ephemeral_to(LEAD, "does not count")
    assert "S0DBA" in refused.args["text"]
    time.sleep(0.5)
    assert d.card_state(card) == "Waiting for approval"
    assert "from <!subteam^S0DBA>" in card_text(d.slack.message(card.channel, card.ts) or {})
    d.click("approve", card, APPROVER)
    d.wait_thread(card, "Waiting for 1 more approval(s) from <!subteam^S0DBA>")
    d.click("approve", card, APPROVER2)
    d.wait_card(card, "Running")
    nudge = d.wait_thread(card, "still killing on")
    assert f"<@{APPROVER}> <@{APPROVER2}>" in nudge and instance in nudge
    d.click("stop", card, APPROVER2)
    d.wait_card(card, "Stopped")


def test_the_requester_hears_back_by_direct_message(d: Driver) -> None:
    card = d.file(new_instance(), "duration=2s user=app")
    d.click("approve", card, APPROVER)
    approved = wait_direct(d, REQUESTER, card.request_id, f"was approved by <@{APPROVER}>")
    link = f"https://test.slack.com/archives/{CHANNEL}/p{card.ts.replace('.', '')}"
    assert f"<{link}|its card>" in approved
    wait_direct(d, REQUESTER, card.request_id, "is running")
    d.wait_card(card, "Finished")
    wait_direct(d, REQUESTER, card.request_id, "is finished")

    rejected = d.file(new_instance())
    d.click("reject", rejected, APPROVER)
    wait_direct(d, REQUESTER, rejected.request_id, f"was rejected by <@{APPROVER}>")

    stopped = d.file(new_instance())
    d.click("approve", stopped, APPROVER)
    d.wait_card(stopped, "Running")
    d.click("stop", stopped, APPROVER2)
    wait_direct(d, REQUESTER, stopped.request_id, f"was stopped by <@{APPROVER2}>")

    failing = d.file(new_instance())
    d.dbbrain.script("CreateKillTask", {"error": "InvalidParameterValue", "message": "no"})
    d.click("approve", failing, APPROVER)
    d.wait_card(failing, "Failed")
    wait_direct(d, REQUESTER, failing.request_id, "did not start")

    expiring = d.file(new_instance())
    with sqlite3.connect(d.bot.env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
        db.execute("UPDATE kill_requests SET expires_at = 0 WHERE id = ?", (expiring.request_id,))
    d.wait_card(expiring, "Expired")
    wait_direct(d, REQUESTER, expiring.request_id, "expired without enough approvals")
