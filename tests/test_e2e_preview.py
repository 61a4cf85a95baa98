"""End to end: the live preview on the card, its refresh, /killtask preview, hidden statements."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from standins.dbbrain import DbbrainEmulator
from standins.slack_api import FakeSlack
from tests.conftest import (
    APPROVER,
    POLICY,
    REQUESTER,
    STRANGER,
    Driver,
    card_text,
    new_instance,
    start_bot,
)

pytestmark = pytest.mark.e2e

LONG_SQL = "SELECT * FROM orders WHERE customer_email = 'alice@example.com' AND " + "x" * 100


def rows(instance_sessions: int = 3) -> list[dict[str, str]]:
    sessions = [
        {"ID": str(100 + i), "User": "app", "Host": f"10.0.0.{5 + i % 2}:4{i:04d}", "DB": "orders",
         "State": "executing", "Command": "Query", "Time": str(10 * (i + 1)), "Info": LONG_SQL}
        for i in range(instance_sessions)
    ]  # fmt: skip
    sessions += [
        {"ID": "200", "User": "app", "Host": "10.0.0.9:1", "DB": "orders", "State": "",
         "Command": "Sleep", "Time": "999", "Info": ""},
        {"ID": "201", "User": "batch", "Host": "10.0.0.7:2", "DB": "billing", "State": "",
         "Command": "Query", "Time": "50", "Info": "UPDATE billing SET x = 1"},
        {"ID": "1", "User": "system user", "Host": "", "DB": "", "State": "",
         "Command": "Connect", "Time": "100000", "Info": ""},
    ]  # fmt: skip
    return sessions


def test_card_shows_what_would_die_and_the_start_counts_from_it(driver: Driver) -> None:
    instance = new_instance()
    driver.dbbrain.set_process_list(instance, rows(3))
    card = driver.file(instance, filters="duration=10m user=app command=Query")
    shown = driver.slack.wait_for(
        "chat.update",
        lambda c: c.args.get("ts") == card.ts and "Live preview" in card_text(c.args),
    )
    text = card_text(shown.args)
    assert "*3 sessions match right now* (of 3 read)" in text
    assert "By account: app 3" in text
    assert "By client host: 10.0.0.5 2 · 10.0.0.6 1" in text
    assert "By command: Query 3" in text
    assert "• 30 s · #102 app@10.0.0.5 orders Query" in text  # the longest first
    assert LONG_SQL[:79] in text and LONG_SQL[:81] not in text
    listed = [c for c in driver.dbbrain.calls_of("DescribeMySqlProcessList")
              if c.params["InstanceId"] == instance]  # fmt: skip
    assert listed[0].params["User"] == "app" and listed[0].params["Command"] == "Query"

    # The preview is seconds old: the kill goes without reading again, counted from it.
    driver.dbbrain.set_process_list(instance, rows(5))
    driver.click("approve", card, APPROVER)
    driver.wait_card(card, "Running")
    said = driver.wait_thread(card, "approved")
    assert re.search(r"with 3 matching sessions seen (just before|\d+ s before)", said), said


def test_refresh_button_reads_again(driver: Driver) -> None:
    instance = new_instance()
    driver.dbbrain.set_process_list(instance, rows(2))
    card = driver.file(instance, filters="duration=10m user=app command=Query")
    driver.slack.wait_for(
        "chat.update", lambda c: c.args.get("ts") == card.ts and "*2 sessions" in card_text(c.args)
    )
    driver.dbbrain.set_process_list(instance, rows(7))
    driver.click("refresh_preview", card, REQUESTER)
    driver.slack.wait_for(
        "chat.update", lambda c: c.args.get("ts") == card.ts and "*7 sessions" in card_text(c.args)
    )
    driver.click("refresh_preview", card, STRANGER)
    driver.ephemeral_to(STRANGER, "not a member of any role")


def test_preview_command_files_nothing(driver: Driver) -> None:
    instance = new_instance()
    driver.dbbrain.set_process_list(instance, rows(4))
    driver.command(f"preview {instance} user=app command=Query,Sleep")
    reply = driver.ephemeral_to(REQUESTER, f"Preview for `{instance}`")
    assert "*5 sessions match right now*" in reply.args["text"]
    assert "nothing was filed" in reply.args["text"]
    assert not [c for c in driver.slack.calls_of("chat.postMessage")
                if f" on {instance}:" in c.args.get("text", "")]  # fmt: skip
    driver.command(f"preview {instance} user=app", user=STRANGER)
    driver.ephemeral_to(STRANGER, "not a member of any role")


def test_policy_can_hide_statements(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    bot = start_bot(tmp_path, slack, dbbrain, POLICY + "preview:\n  show_statements: false\n")
    try:
        driver = Driver(bot, slack, dbbrain)
        instance = new_instance()
        dbbrain.set_process_list(instance, rows(3))
        card = driver.file(instance, filters="duration=10m user=app")
        shown = slack.wait_for(
            "chat.update",
            lambda c: c.args.get("ts") == card.ts and "Live preview" in card_text(c.args),
        )
        assert "alice@example.com" not in card_text(shown.args)
        assert "• 999 s · #200 app@10.0.0.9 orders Sleep" in card_text(shown.args)
    finally:
        assert bot.stop() == 0
