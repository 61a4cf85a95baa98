"""End to end, the runtime: nothing a person was told about is lost when the bot is killed
right after an ack; health, readiness and metrics; JSON logs; policy reload on SIGHUP; a
database outage ends in words."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from standins.dbbrain import DbbrainEmulator
from standins.slack_api import FakeSlack
from standins.tcp_proxy import TcpProxy
from tests.conftest import (
    APPROVER,
    POLICY,
    REQUESTER,
    BotProcess,
    Driver,
    card_text,
    new_instance,
    start_bot,
    wait_until,
)

pytestmark = pytest.mark.e2e

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, str]:
    try:
        with OPENER.open(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def row(bot: BotProcess, request_id: int) -> dict[str, Any]:
    path = Path(bot.env["DATABASE_URL"].removeprefix("sqlite:///"))
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return dict(
            conn.execute("SELECT * FROM kill_requests WHERE id = ?", (request_id,)).fetchone()
        )
    finally:
        conn.close()


def card_posts(slack: FakeSlack, instance: str) -> list:
    return [
        c
        for c in slack.calls_of("chat.postMessage")
        if f" on {instance}:" in c.args.get("text", "") and not c.args.get("thread_ts")
    ]


# ---------------------------------------------------------------- killed right after the ack


def test_a_filing_acked_just_before_a_crash_gets_exactly_one_card(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    bot = start_bot(tmp_path, slack, dbbrain)
    instance = new_instance()
    # The card post is in flight when the bot dies; Slack still takes it a moment later.
    slack.script("chat.postMessage", {"hang": 0.5}, when=lambda a: instance in a.get("text", ""))
    try:
        answer = json.loads(
            Driver(bot, slack, dbbrain).command(f"{instance} duration=10m user=app")
        )
        assert "is filed" in answer["text"]
        wait_until(lambda: card_posts(slack, instance), "the card post to be in flight")
    finally:
        bot.stop(signal.SIGKILL)
    again = start_bot(tmp_path, slack, dbbrain)
    try:
        driver = Driver(again, slack, dbbrain)
        card = driver.card_posted(instance)
        # the new process finds the card the dead one posted, instead of posting another
        wait_until(lambda: row(again, card.request_id)["message_ts"] == card.ts, "the card found")
        wait_until(
            lambda: "Live preview" in card_text(slack.message(card.channel, card.ts) or {}),
            "the preview the dead process never read",
        )
        assert len(card_posts(slack, instance)) == 1
        driver.click("approve", card, APPROVER)
        driver.wait_card(card, "Running")
    finally:
        assert again.stop() == 0


def test_an_approval_acked_just_before_a_crash_starts_exactly_once(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    # A preview older than one sample period is read again before the start.
    bot = start_bot(tmp_path, slack, dbbrain, POLICY + "effect:\n  sample_seconds: 0.2\n")
    instance = new_instance()
    try:
        driver = Driver(bot, slack, dbbrain)
        card = driver.file(instance)
        wait_until(
            lambda: "Live preview" in card_text(slack.message(card.channel, card.ts) or {}),
            "the filing's preview",
        )
        time.sleep(0.3)  # the preview is now older than a sample period
        # The approval is stored before the ack; the re-read after it is slow, so the crash
        # lands after the ack and before CreateKillTask.
        dbbrain.script("DescribeMySqlProcessList", {"delay": 3})
        driver.click("approve", card, APPROVER)
        dbbrain.wait_for_arrival("DescribeMySqlProcessList", instance)
        assert row(bot, card.request_id)["state"] == "approved"
    finally:
        bot.stop(signal.SIGKILL)
    again = start_bot(tmp_path, slack, dbbrain)
    try:
        driver = Driver(again, slack, dbbrain)
        driver.wait_card(card, "Running", timeout=20)
        created = [
            c for c in dbbrain.calls_of("CreateKillTask") if c.params["InstanceId"] == instance
        ]
        assert len(created) == 1
        driver.wait_thread(card, f"<@{APPROVER}> approved; started the kill task")
    finally:
        assert again.stop() == 0


# ---------------------------------------------------------------- health and metrics


def test_health_readiness_and_metrics(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    bot = start_bot(tmp_path, slack, dbbrain)
    try:
        assert get(f"{bot.url}/healthz") == (200, "ok\n")
        assert get(f"{bot.url}/readyz") == (200, "ready\n")
        driver = Driver(bot, slack, dbbrain)
        card = driver.file(new_instance())
        driver.click("approve", card, APPROVER)
        driver.wait_card(card, "Running")
        slack.script("chat.postEphemeral", {"status": 500})
        driver.click("approve", card, APPROVER)  # a late click: its answer fails once
        status, text = get(f"{bot.url}/metrics")
        assert status == 200

        def value(line_start: str) -> float:
            found = [ln for ln in text.splitlines() if ln.startswith(line_start)]
            assert found, f"{line_start} not in /metrics"
            return float(found[0].rsplit(" ", 1)[1])

        assert value('killtask_requests_total{outcome="filed"}') >= 1
        assert value('killtask_requests_total{outcome="started"}') >= 1
        assert value('killtask_dbbrain_calls_total{action="CreateKillTask",code="ok"}') >= 1
        assert value('killtask_dbbrain_call_seconds_count{action="CreateKillTask"}') >= 1
        assert value("killtask_ack_seconds_count") >= 2
        assert value('killtask_rate_limit_wait_seconds_count{kind="urgent"}') >= 1
        wait_until(
            lambda: (
                'killtask_slack_errors_total{method="chat.postEphemeral"}'
                in get(f"{bot.url}/metrics")[1]
            ),
            "the Slack error counted",
        )
        wait_until(
            lambda: 'killtask_tasks{state="running"} 1.0' in get(f"{bot.url}/metrics")[1],
            "the clock to count the running task",
        )
    finally:
        assert bot.stop() == 0


def test_a_database_outage_ends_in_words_and_readiness_follows_it(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator, postgres_url: str
) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    through_proxy = url.set(drivername="postgresql+psycopg", port=proxy.port)
    bot = start_bot(
        tmp_path, slack, dbbrain, DATABASE_URL=through_proxy.render_as_string(hide_password=False)
    )
    try:
        driver = Driver(bot, slack, dbbrain)
        card = driver.file(new_instance())
        proxy.cut()
        wait_until(lambda: get(f"{bot.url}/readyz")[0] == 503, "readiness to notice the outage")
        assert get(f"{bot.url}/healthz")[0] == 200  # alive: no reason to restart it
        answer = json.loads(driver.command(f"{new_instance()} duration=10m user=app"))
        assert "database did not answer" in answer["text"] and "not filed" in answer["text"]
        driver.click("approve", card, APPROVER)
        driver.ephemeral_to(APPROVER, "your approval was not recorded")
        proxy.restore()
        wait_until(lambda: get(f"{bot.url}/readyz")[0] == 200, "readiness to come back")
        driver.click("approve", card, APPROVER)
        driver.wait_card(card, "Running", timeout=20)
    finally:
        proxy.restore()
        assert bot.stop() == 0
        proxy.stop()


# ---------------------------------------------------------------- logs and reload


def test_json_logs_are_one_object_a_line(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    bot = start_bot(tmp_path, slack, dbbrain, LOG_FORMAT="json")
    try:
        driver = Driver(bot, slack, dbbrain)
        card = driver.file(new_instance())
        driver.click("approve", card, APPROVER)
        driver.wait_card(card, "Running")
    finally:
        assert bot.stop() == 0
    lines = [ln for ln in bot.log().splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]  # every line, gunicorn's included
    events = {r.get("event") for r in records}
    assert {"started", "policy_loaded", "dbbrain_ok"} <= events
    ok = next(r for r in records if r.get("event") == "dbbrain_ok")
    assert ok["action"] in ("CreateKillTask", "DescribeMySqlProcessList") and ok["level"] == "INFO"


def test_sighup_reloads_the_policy_and_refuses_a_bad_one(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    bot = start_bot(tmp_path, slack, dbbrain)
    policy_file = Path(bot.env["POLICY_FILE"])
    try:
        driver = Driver(bot, slack, dbbrain)
        policy_file.write_text(POLICY.replace("max_duration: 3600", "max_duration: nope"))
        os.kill(bot.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        wait_until(lambda: "policy_reload_refused" in bot.log(), "the bad policy to be refused")
        refused = [ln for ln in bot.log().splitlines() if "policy_reload_refused" in ln]
        assert len(refused) == 1 and "roles.oncall.max_duration" in refused[0]
        driver.file(new_instance())  # the old policy still holds: the requester may file
        policy_file.write_text(POLICY.replace("allow: [request, preview]", "allow: [preview]"))
        os.kill(bot.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        wait_until(lambda: bot.log().count("policy_loaded") >= 2, "the new policy to load")
        answer = json.loads(driver.command(f"{new_instance()} duration=10m user=app"))
        assert "allows `request`" in answer["text"]
        assert get(f"{bot.url}/healthz")[0] == 200  # reloaded in place, not restarted
    finally:
        assert bot.stop() == 0


# ---------------------------------------------------------------- Slack failing after the ack


def test_a_card_post_without_an_answer_never_gives_two_cards(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    bot = start_bot(tmp_path, slack, dbbrain)
    instance = new_instance()
    # Longer than the bot's 10 s Slack timeout: the bot hears nothing, Slack posts it anyway.
    slack.script("chat.postMessage", {"hang": 11}, when=lambda a: instance in a.get("text", ""))
    try:
        driver = Driver(bot, slack, dbbrain)
        driver.command(f"{instance} duration=10m user=app")
        driver.ephemeral_to(REQUESTER, "no clear answer when I posted its card", timeout=20)
        posted = wait_until(
            lambda: next((c for c in card_posts(slack, instance) if c.response), None),
            "Slack to take the card after all",
        )
        ts, request_id = posted.response["ts"], int(posted.args["text"].split("#")[1].split()[0])
        # the clock looks in the channel before any second post (after about 30 s)
        wait_until(lambda: row(bot, request_id)["message_ts"] == ts, "the card found", 60)
        assert len(card_posts(slack, instance)) == 1
        channel = posted.args["channel"]
        assert any(
            c.args.get("channel") == channel for c in slack.calls_of("conversations.history")
        )
    finally:
        assert bot.stop() == 0


def test_a_channel_without_the_bot_says_to_invite_it(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    bot = start_bot(tmp_path, slack, dbbrain)
    instance = new_instance()
    slack.script(
        "chat.postMessage", {"ok": False, "error": "not_in_channel"},
        when=lambda a: instance in a.get("text", ""),
    )  # fmt: skip
    try:
        driver = Driver(bot, slack, dbbrain)
        driver.command(f"{instance} duration=10m user=app")
        told = driver.ephemeral_to(REQUESTER, "/invite @killtask")
        assert "I am not a member there" in told.args["text"]
    finally:
        assert bot.stop() == 0
