"""End to end under faults: DBbrain and Slack misbehaving, and SIGTERM with work in flight.

The real bot runs as a process; the faults are scripted on the stand-ins, never on bot code.
Nothing here asserts a duration: every wait polls a condition until a deadline.
"""

from __future__ import annotations

import signal
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from standins.dbbrain import Call, DbbrainEmulator
from standins.slack_api import FakeSlack, SlackCall
from tests.conftest import (
    APPROVER,
    REQUESTER,
    BotProcess,
    Card,
    Driver,
    buttons,
    card_text,
    free_port,
    new_instance,
    start_bot,
    wait_until,
)

pytestmark = pytest.mark.e2e

THROTTLED = {"error": "RequestLimitExceeded", "message": "Your request rate is too high."}
FINAL_CREATE_OUTCOMES = ("running", "failed", "unknown")


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _no_leftover_scripts(slack: FakeSlack, dbbrain: DbbrainEmulator):
    """A scripted answer a test did not use must not leak into the next test."""
    yield
    drop_scripts(slack, dbbrain)


def drop_scripts(*fakes: FakeSlack | DbbrainEmulator) -> None:
    """Forget scripted answers nobody used (the stand-ins have no public call for this)."""
    for fake in fakes:
        with fake._cond:
            fake._scripts.clear()


def query(bot: BotProcess, sql: str, *params: object) -> list[dict[str, Any]]:
    """Rows from the bot's own SQLite file (read only)."""
    path = Path(bot.env["DATABASE_URL"].removeprefix("sqlite:///"))
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def request_row(bot: BotProcess, request_id: int) -> dict[str, Any]:
    rows = query(bot, "SELECT * FROM kill_requests WHERE id = ?", request_id)
    assert len(rows) == 1, rows
    return rows[0]


def final_create_audit(bot: BotProcess, request_id: int) -> dict[str, Any]:
    """The one audit row with the cloud call's final outcome (not the 'sending' row)."""
    rows = query(
        bot,
        "SELECT * FROM audit_log WHERE request_id = ? AND action = 'create_kill_task' ORDER BY id",
        request_id,
    )
    assert [r["outcome"] for r in rows][:1] == ["sending"], rows
    final = [r for r in rows if r["outcome"] in FINAL_CREATE_OUTCOMES]
    assert len(final) == 1, rows
    return final[0]


def creates(dbbrain: DbbrainEmulator, instance: str) -> list[Call]:
    """Every signed CreateKillTask for this instance that reached the emulator."""
    return [c for c in dbbrain.calls_of("CreateKillTask") if c.params.get("InstanceId") == instance]


def healthy(bot: BotProcess) -> None:
    assert bot.proc is not None and bot.proc.poll() is None, bot.log()[-3000:]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{bot.url}/healthz", timeout=5) as resp:
        assert resp.status == 200


def card_synced(bot: BotProcess, card: Card) -> bool:
    row = request_row(bot, card.request_id)
    return row["card_synced_rev"] >= row["card_rev"]


def file_settled(driver: Driver, instance: str) -> Card:
    """File a request and wait until the filing's own work is over: the card is posted and in
    sync, and the requester was told. A fault scripted after this hits the next action only."""
    card = driver.file(instance)
    driver.ephemeral_to(REQUESTER, f"Request #{card.request_id} is filed")
    wait_until(lambda: card_synced(driver.bot, card), "the new card to be in sync")
    wait_until(
        lambda: all(c.response is not None for c in updates_of(driver.slack, card)),
        "every chat.update of the new card to be answered",
    )
    driver.wait_card(card, "Waiting for approval")
    return card


def told(slack: FakeSlack, words: str, since: float, user: str = REQUESTER) -> SlackCall:
    """The ephemeral to `user` containing `words`, sent after `since` (request numbers repeat
    across the bots of this module, which share one fake Slack)."""
    return slack.wait_for(
        "chat.postEphemeral",
        lambda c: c.at >= since and c.args.get("user") == user and words in c.args.get("text", ""),
        timeout=10,
    )


def replied_ids(calls: list[Call]) -> set[str]:
    """RequestIds of the calls DBbrain answered with its own JSON (not dropped, raw or 5xx)."""
    return {
        c.request_id
        for c in calls
        if not {"drop", "raw", "http_status"} & (c.scripted or {}).keys()
    }


def audited_ids(bot: BotProcess, request_id: int) -> set[str]:
    rows = query(bot, "SELECT cloud_request_id FROM audit_log WHERE request_id = ?", request_id)
    return {r["cloud_request_id"] for r in rows if r["cloud_request_id"]}


def still_works(driver: Driver) -> None:
    """The bot is up: /healthz answers, and a new request can be filed and approved."""
    healthy(driver.bot)
    instance = new_instance()
    card = file_settled(driver, instance)
    driver.click("approve", card, APPROVER)
    driver.wait_card(card, "Running", timeout=15)
    assert len(creates(driver.dbbrain, instance)) == 1
    assert driver.dbbrain.active_task(instance) is not None


def posted_card(slack: FakeSlack, instance: str, timeout: float = 10.0) -> Card:
    """The card Slack accepted (a failed post is recorded too, without a ts)."""
    call = slack.wait_for(
        "chat.postMessage",
        lambda c: (
            not c.args.get("thread_ts")
            and f" on {instance}:" in c.args.get("text", "")
            and bool((c.response or {}).get("ok"))
        ),
        timeout=timeout,
    )
    request_id = int(call.args["text"].split("#", 1)[1].split()[0])
    return Card(request_id, call.response["ts"], call.args["channel"])


def updates_of(slack: FakeSlack, card: Card) -> list[SlackCall]:
    return [
        c
        for c in slack.calls_of("chat.update")
        if c.args.get("channel") == card.channel and c.args.get("ts") == card.ts
    ]


# ---------------------------------------------------------------- DBbrain faults


def test_throttled_twice_then_accepted_creates_one_task(driver: Driver) -> None:
    instance = new_instance()
    card = file_settled(driver, instance)
    driver.dbbrain.script("CreateKillTask", THROTTLED, THROTTLED)
    driver.click("approve", card, APPROVER)

    running = driver.wait_card(card, "Running", timeout=15)
    calls = creates(driver.dbbrain, instance)
    assert [c.error_code for c in calls] == ["RequestLimitExceeded", "RequestLimitExceeded", None]
    created = [c for c in calls if c.effect == "created"]
    assert len(created) == 1
    assert driver.dbbrain.active_task(instance) is not None
    request_id = created[0].request_id
    assert request_id in card_text(running)
    assert "stop" in buttons(running) and not {"approve", "reject"} & set(buttons(running))
    driver.wait_thread(card, f"<@{APPROVER}> approved; started the kill task")
    assert request_id in driver.wait_thread(card, "DBbrain RequestId")

    row = final_create_audit(driver.bot, card.request_id)
    assert row["outcome"] == "running"
    assert row["actor_id"] == APPROVER
    assert row["cloud_request_id"] == request_id
    assert "attempts=3" in (row["detail"] or "")
    assert request_row(driver.bot, card.request_id)["cloud_request_id"] == request_id
    # the two throttled tries carried DBbrain RequestIds too: each is in the audit log
    assert replied_ids(calls) == {c.request_id for c in calls}
    assert replied_ids(calls) <= audited_ids(driver.bot, card.request_id)
    still_works(driver)


@pytest.mark.parametrize(
    ("answers", "title", "words", "one_call", "created"),
    [
        pytest.param(
            [THROTTLED] * 6,
            "Failed",
            ["too many requests", "Nothing was created"],
            False,
            False,
            id="throttled-every-attempt",
        ),
        pytest.param(
            [{"http_status": 502, "body": "Bad Gateway"}],
            "Outcome unknown",
            ["HTTP error status", "will not be sent again on its own"],
            True,
            False,
            id="http-502",
        ),
        pytest.param(
            [{"raw": "<html>not json</html>"}],
            "Outcome unknown",
            ["could not be read", "will not be sent again on its own"],
            True,
            False,
            id="not-json",
        ),
        pytest.param(
            # DBbrain did the work, then the connection died before the answer
            [{"drop": True}],
            "Outcome unknown",
            ["after the request was sent", "will not be sent again on its own"],
            True,
            True,
            id="dropped-connection",
        ),
    ],
)
def test_cloud_fault_ends_the_request_and_the_bot_carries_on(
    driver: Driver,
    answers: list[dict],
    title: str,
    words: list[str],
    one_call: bool,
    created: bool,
) -> None:
    instance = new_instance()
    card = file_settled(driver, instance)
    driver.dbbrain.script("CreateKillTask", *answers)
    driver.click("approve", card, APPROVER)

    shown = driver.wait_card(card, title, timeout=20)
    text = card_text(shown)
    for phrase in words:
        assert phrase in text, text
    if title == "Outcome unknown":
        # the only way out is a Stop that cancels whatever runs on the instance
        assert "stop" in buttons(shown)
    else:
        assert "stop" not in buttons(shown)
    assert not {"approve", "reject"} & set(buttons(shown))
    reply = driver.wait_thread(card, f":warning: {title} after <@{APPROVER}>'s approval.")
    assert words[0] in reply

    # The card shows the final state only after the gateway gave up, so the count is final.
    calls = creates(driver.dbbrain, instance)
    if one_call:
        assert len(calls) == 1, [(c.error_code, c.scripted) for c in calls]
    else:
        assert 1 < len(calls) <= len(answers)
        assert all(c.error_code == "RequestLimitExceeded" for c in calls)
    assert len([c for c in calls if c.effect == "created"]) == int(created)
    assert (driver.dbbrain.active_task(instance) is not None) is created

    row = final_create_audit(driver.bot, card.request_id)
    assert row["outcome"] == ("unknown" if title == "Outcome unknown" else "failed")
    assert row["actor_id"] == APPROVER and row["instance_id"] == instance
    assert f"attempts={len(calls)}" in (row["detail"] or "")
    stored = request_row(driver.bot, card.request_id)
    if one_call:
        # no reply DBbrain wrote came back, so there is no RequestId to record
        assert row["cloud_request_id"] is None
        assert stored["cloud_request_id"] is None
    else:
        # DBbrain's own error reply carried a RequestId: the last attempt's is kept
        assert row["cloud_request_id"] == calls[-1].request_id
        assert stored["cloud_request_id"] == calls[-1].request_id
        assert calls[-1].request_id in text
    # every RequestId DBbrain gave back (one per throttled try) is in the audit log
    assert replied_ids(calls) <= audited_ids(driver.bot, card.request_id)
    drop_scripts(driver.dbbrain)  # the throttling answers the gateway did not get to

    if title == "Outcome unknown":
        # Stop cancels whatever may run there, so the instance is usable again
        driver.click("stop", card, APPROVER)
        driver.wait_card(card, "Stopped")
        assert driver.dbbrain.active_task(instance) is None
    still_works(driver)


def test_connection_refused_fails_without_reaching_dbbrain(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    port = free_port()  # found free and left closed: nothing listens there
    bot = start_bot(tmp_path, slack, dbbrain, DBBRAIN_ENDPOINT=f"http://127.0.0.1:{port}")
    try:
        driver = Driver(bot, slack, dbbrain)
        instance = new_instance()
        card = file_settled(driver, instance)
        driver.click("approve", card, APPROVER)

        shown = driver.wait_card(card, "Failed", timeout=20)
        text = card_text(shown)
        assert "DBbrain could not be reached" in text
        assert "could not connect to DBbrain" in text
        assert "Nothing was created" in text
        assert not {"approve", "reject", "stop"} & set(buttons(shown))
        reply = driver.wait_thread(card, f":warning: Failed after <@{APPROVER}>'s approval.")
        assert "could not be reached" in reply
        assert creates(dbbrain, instance) == []
        assert dbbrain.active_task(instance) is None

        row = final_create_audit(bot, card.request_id)
        assert row["outcome"] == "failed" and row["actor_id"] == APPROVER
        assert "ClientNetworkError" in (row["detail"] or "")
        assert row["cloud_request_id"] is None

        # still up: it answers and files the next request
        healthy(bot)
        other = new_instance()
        driver.wait_card(driver.file(other), "Waiting for approval")
    finally:
        code = bot.stop()
    assert code == 0, bot.log()[-3000:]


# ---------------------------------------------------------------- Slack faults


def on_card(card):  # type: ignore[no-untyped-def]
    """Scripted answers for this card's updates only, not a stray one from earlier work."""
    return lambda args: args.get("ts") == card.ts


def test_card_update_throttled_then_failing_while_approving(driver: Driver) -> None:
    instance = new_instance()
    card = file_settled(driver, instance)
    driver.slack.script(
        "chat.update", {"status": 429, "retry_after": 1}, {"status": 500}, when=on_card(card)
    )
    driver.click("approve", card, APPROVER)

    wait_until(
        lambda: (
            {429, 500} <= {(c.fault or {}).get("status") for c in updates_of(driver.slack, card)}
        ),
        "both scripted chat.update faults to be used on this card",
    )
    running = driver.wait_card(card, "Running", timeout=20)
    calls = creates(driver.dbbrain, instance)
    assert len(calls) == 1 and calls[0].effect == "created"
    assert calls[0].request_id in card_text(running)
    driver.wait_thread(card, f"<@{APPROVER}> approved; started the kill task")

    row = final_create_audit(driver.bot, card.request_id)
    assert row["outcome"] == "running" and row["cloud_request_id"] == calls[0].request_id

    # Once the bot believes the card is up to date, Slack shows the latest state.
    wait_until(lambda: card_synced(driver.bot, card), "the card to be marked in sync")
    assert driver.card_state(card) == "Running"
    still_works(driver)


def test_card_post_failing_once_stores_the_request_and_posts_it_later(driver: Driver) -> None:
    instance = new_instance()
    since = time.time()
    driver.slack.script(
        "chat.postMessage", {"status": 500}, when=lambda args: instance in args.get("text", "")
    )
    driver.command(f"{instance} duration=10m user=app")

    failed = driver.slack.wait_for(
        "chat.postMessage",
        lambda c: f" on {instance}:" in c.args.get("text", "") and c.fault is not None,
    )
    assert failed.response == {"ok": False, "error": "internal_error"}
    request_id = int(failed.args["text"].split("#", 1)[1].split()[0])

    reply = told(driver.slack, f"Request #{request_id} is filed", since)
    assert "no clear answer when I posted its card" in reply.args["text"]
    stored = wait_until(
        lambda: query(driver.bot, "SELECT * FROM kill_requests WHERE instance_id = ?", instance),
        "the request to be stored",
    )
    assert len(stored) == 1
    assert stored[0]["id"] == request_id and stored[0]["state"] == "pending"
    filed = query(
        driver.bot,
        "SELECT * FROM audit_log WHERE request_id = ? AND action = 'request'",
        request_id,
    )
    assert [r["outcome"] for r in filed] == ["filed"]
    driver.command("list")
    told(driver.slack, f"`{instance}`", since)

    # The tick posts the card again once the first try is old enough (about 30 s here).
    card = posted_card(driver.slack, instance, timeout=90)
    assert card.request_id == request_id
    wait_until(
        lambda: request_row(driver.bot, request_id)["message_ts"] == card.ts,
        "the bot to note where the card is",
    )
    driver.wait_card(card, "Waiting for approval")
    posts = [
        c
        for c in driver.slack.calls_of("chat.postMessage")
        if f" on {instance}:" in c.args.get("text", "") and not c.args.get("thread_ts")
    ]
    assert len(posts) == 2  # the refused one and the one Slack took: no duplicate card
    assert creates(driver.dbbrain, instance) == []

    driver.click("approve", card, APPROVER)
    driver.wait_card(card, "Running", timeout=15)
    assert len(creates(driver.dbbrain, instance)) == 1


def test_card_update_hanging_does_not_hold_the_click(driver: Driver) -> None:
    instance = new_instance()
    card = file_settled(driver, instance)
    driver.slack.script("chat.update", {"hang": 3.0}, when=on_card(card))

    status, body, _ = driver.sender.click(
        "approve", str(card.request_id), user_id=APPROVER, channel_id=card.channel,
        message_ts=card.ts,
    )  # fmt: skip
    assert status == 200, body

    wait_until(
        lambda: any("hang" in (c.fault or {}) for c in updates_of(driver.slack, card)),
        "the hanging chat.update to reach Slack",
    )
    running = driver.wait_card(card, "Running", timeout=20)
    calls = creates(driver.dbbrain, instance)
    assert len(calls) == 1 and calls[0].request_id in card_text(running)
    driver.wait_thread(card, f"<@{APPROVER}> approved; started the kill task")
    wait_until(lambda: card_synced(driver.bot, card), "the card to be marked in sync")
    # let the hung call finish (it writes the state it was sent with) before the last look
    wait_until(
        lambda: all(c.response is not None for c in updates_of(driver.slack, card)),
        "every chat.update of this card to be answered",
    )
    # An older update landing last marks the card behind again; the clock re-sends the newest.
    driver.wait_card(card, "Running", timeout=5)
    still_works(driver)


def test_the_kill_does_not_wait_for_slack_to_show_starting(driver: Driver) -> None:
    """Slack is slow to update the card: CreateKillTask goes out all the same, while the
    "starting" update still hangs, and the card ends on Running."""
    instance = new_instance()
    card = file_settled(driver, instance)
    driver.slack.script("chat.update", {"hang": 8.0}, when=on_card(card))
    driver.click("approve", card, APPROVER)
    driver.dbbrain.wait_for_arrival("CreateKillTask", instance)
    answered = [c for c in updates_of(driver.slack, card) if c.fault and c.response is not None]
    assert answered == []  # the kill was sent before Slack answered the slow update
    driver.wait_card(card, "Running", timeout=20)
    wait_until(
        lambda: all(c.response is not None for c in updates_of(driver.slack, card)),
        "every chat.update of this card to be answered",
        timeout=15,
    )
    wait_until(lambda: driver.card_state(card) == "Running", "the card to show Running")
    assert len(creates(driver.dbbrain, instance)) == 1


def test_stale_card_update_landing_late_does_not_win(driver: Driver) -> None:
    """A catch-up render of an older state must not overwrite the newer card for good.

    The bot's own card updates at approval fail, so the tick re-renders "starting"; that call
    hangs in Slack while the task starts (CreateKillTask takes 1.5 s), and the bot's "running"
    update lands first. The hung "starting" update then lands on top of it.
    """
    instance = new_instance()
    card = file_settled(driver, instance)
    # the approval's own updates (session preview, "starting") and a first tick fail; the next
    # tick's update hangs
    driver.slack.script("chat.update", *[{"status": 500}] * 3, {"hang": 3.0}, when=on_card(card))
    driver.dbbrain.script("CreateKillTask", {"delay": 1.5})
    driver.click("approve", card, APPROVER)

    hung = wait_until(
        lambda: [c for c in updates_of(driver.slack, card) if "hang" in (c.fault or {})],
        "the hanging chat.update to reach Slack",
    )
    driver.wait_card(card, "Running", timeout=20)
    wait_until(
        lambda: all(c.response is not None for c in updates_of(driver.slack, card)),
        "every chat.update of this card to be answered",
    )
    wait_until(lambda: card_synced(driver.bot, card), "the card to be marked in sync")
    # the tick has had every chance to notice; the card must show the latest state
    wait_until(
        lambda: driver.card_state(card) == "Running",
        f"the card to show Running again (the late update was {hung[0].args.get('text')!r}; "
        f"the card shows {driver.card_state(card)!r})",
        timeout=5,
    )
    assert len(creates(driver.dbbrain, instance)) == 1


# ---------------------------------------------------------------- SIGTERM


def test_sigterm_lets_an_approval_in_flight_finish(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    bot = start_bot(tmp_path, slack, dbbrain)
    instance = new_instance()
    try:
        driver = Driver(bot, slack, dbbrain)
        card = file_settled(driver, instance)
        dbbrain.script("CreateKillTask", {"delay": 1.5})
        driver.click("approve", card, APPROVER)
    finally:
        code = bot.stop(signal.SIGTERM)
    assert code == 0, bot.log()[-3000:]

    calls = creates(dbbrain, instance)
    assert len(calls) == 1 and calls[0].effect == "created", calls
    assert dbbrain.active_task(instance) is not None
    assert driver.card_state(card) == "Running", bot.log()[-3000:]
    assert calls[0].request_id in card_text(slack.message(card.channel, card.ts) or {})
    assert any("approved; started the kill task" in t for t in driver.thread(card))
    row = final_create_audit(bot, card.request_id)
    assert row["outcome"] == "running" and row["cloud_request_id"] == calls[0].request_id
    assert request_row(bot, card.request_id)["state"] == "running"
