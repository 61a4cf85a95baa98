"""End to end: one-shot kills, the live effect on the card, the summary and its chart, and what
the preview knows about locks and DBbrain's diagnosis. The real bot against the emulator and the
Slack stand-in; real MariaDB sessions where it matters which ones die."""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.reading import dbbrain_time
from standins.dbbrain import DbbrainEmulator
from standins.sessions import MySQLSessions, parse_mysql_url
from standins.slack_api import FakeSlack
from tests.conftest import (
    APPROVER,
    COMMANDER,
    POLICY,
    BotProcess,
    Card,
    Driver,
    card_text,
    new_instance,
    start_bot,
    wait_until,
)

pytestmark = pytest.mark.e2e

PNG = b"\x89PNG\r\n\x1a\n"
EFFECT_POLICY = POLICY + "effect:\n  sample_seconds: 0.2\nonce:\n  max_sessions: 150\n"


@pytest.fixture(scope="module")
def effect_bot(
    tmp_path_factory: pytest.TempPathFactory, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> Iterator[BotProcess]:
    bot = start_bot(tmp_path_factory.mktemp("effect"), slack, dbbrain, EFFECT_POLICY)
    yield bot
    bot.stop()


@pytest.fixture
def drive(effect_bot: BotProcess, slack: FakeSlack, dbbrain: DbbrainEmulator) -> Driver:
    return Driver(effect_bot, slack, dbbrain)


def shown(driver: Driver, card: Card) -> str:
    return card_text(driver.slack.message(card.channel, card.ts) or {})


def wait_shown(driver: Driver, card: Card, words: str, timeout: float = 15.0) -> str:
    return wait_until(
        lambda: shown(driver, card) if words in shown(driver, card) else None,
        f"{words!r} on the card; it shows:\n{shown(driver, card)}",
        timeout,
    )


def row(thread_id: int, user: str = "app", command: str = "Query", **more: str) -> dict:
    return {"ID": str(thread_id), "User": user, "Host": f"10.0.0.{thread_id % 7 + 1}:4000",
            "DB": "orders", "State": "executing", "Command": command,
            "Time": str(thread_id % 50), "Info": "SELECT * FROM orders", **more}  # fmt: skip


def kill_calls(dbbrain: DbbrainEmulator, instance: str, stage: str) -> list:
    return [
        c
        for c in dbbrain.calls_of("KillMySqlThreads")
        if c.params.get("InstanceId") == instance and c.params.get("Stage") == stage
    ]


# ---------------------------------------------------------------- one-shot kills


def test_one_shot_kill_in_batches_of_at_most_100(drive: Driver) -> None:
    instance = new_instance()
    rows = [row(1000 + i) for i in range(130)] + [row(2000 + i, user="etl") for i in range(5)]
    drive.dbbrain.set_process_list(instance, rows)
    card = drive.file(instance, "duration=once user=app command=Query")
    text = wait_shown(drive, card, "*130 sessions match right now*")
    assert "Once, right after approval" in text
    assert "Stop" not in [b.get("text", {}).get("text") for b in _buttons(drive, card)]

    drive.click("approve", card, APPROVER)
    text = card_text(drive.wait_card(card, "Killed 130 sessions"))
    prepares = kill_calls(drive.dbbrain, instance, "Prepare")
    assert [len(c.params["Threads"]) for c in prepares] == [100, 30]
    assert sorted(t for c in prepares for t in c.params["Threads"]) == list(range(1000, 1130))
    commits = kill_calls(drive.dbbrain, instance, "Commit")
    assert len(commits) == 2 and all(c.params["RecordHistory"] is True for c in commits)
    assert {r["User"] for r in drive.dbbrain.backends[instance].list()} == {"etl"}
    assert "*Killed 130 sessions* with KillMySqlThreads." in text
    assert "Matching sessions read again afterwards: 0." in text
    assert text.count("• #1") == 10  # the first ten, longest-running first
    assert not [b for b in _buttons(drive, card) if b["action_id"] == "stop"]
    summary = drive.wait_thread(card, "Summary of one-shot kill")
    assert "killed 130 of 130 matching sessions" in summary
    assert "Matching sessions before: 130, after: 0" in summary


def _buttons(driver: Driver, card: Card) -> list[dict]:
    message = driver.slack.message(card.channel, card.ts) or {}
    return [
        element
        for block in message.get("blocks") or []
        for element in block.get("elements") or []
        if element.get("type") == "button"
    ]


def test_one_shot_over_the_cap_needs_kill_all(drive: Driver) -> None:
    instance = new_instance()
    drive.dbbrain.set_process_list(instance, [row(3000 + i) for i in range(160)])
    card = drive.file(instance, "duration=once user=app")
    wait_shown(drive, card, "*160 sessions match right now*")
    drive.click("approve", card, APPROVER)
    drive.wait_card(card, "Failed")
    assert "more than the policy's once.max_sessions (150)" in drive.wait_thread(card, "Failed")
    assert kill_calls(drive.dbbrain, instance, "Prepare") == []
    assert len(drive.dbbrain.backends[instance].list()) == 160

    # Someone whose role allows kill_all may approve it.
    instance = new_instance()
    drive.dbbrain.set_process_list(instance, [row(3000 + i) for i in range(160)])
    again = drive.file(instance, "duration=once user=app")
    drive.click("approve", again, COMMANDER)
    drive.wait_card(again, "Killed 160 sessions")


def test_an_interrupted_commit_is_outcome_unknown_and_never_sent_again(drive: Driver) -> None:
    instance = new_instance()
    drive.dbbrain.set_process_list(instance, [row(4000 + i) for i in range(3)])
    card = drive.file(instance, "duration=once user=app")
    wait_shown(drive, card, "*3 sessions match right now*")
    # The Prepare is answered; the Commit runs at DBbrain but its answer never arrives.
    drive.dbbrain.script("KillMySqlThreads", {"delay": 0}, {"drop": True})
    drive.click("approve", card, APPROVER)
    text = card_text(drive.wait_card(card, "Outcome unknown"))
    assert "cannot tell which of these sessions were killed" in text
    assert "It will not be sent again" in text
    assert "*Confirmed killed: 0 of 3 sessions.* The outcome of the last batch is unknown" in text
    assert not [b for b in _buttons(drive, card) if b["action_id"] == "stop"]
    drive.wait_thread(card, "Outcome unknown")
    time.sleep(1.0)  # five clock ticks: nothing sends it again
    assert len(kill_calls(drive.dbbrain, instance, "Commit")) == 1
    assert len(kill_calls(drive.dbbrain, instance, "Prepare")) == 1


# ---------------------------------------------------------------- the effect and the summary


def test_samples_show_the_trend_and_a_stop_posts_the_summary_and_chart(drive: Driver) -> None:
    instance = new_instance()
    drive.dbbrain.set_process_list(instance, [row(5000 + i) for i in range(6)])
    card = drive.file(instance, "duration=10m user=app command=Query")
    wait_shown(drive, card, "*6 sessions match right now*")
    drive.click("approve", card, APPROVER)
    drive.wait_card(card, "Running")
    # The emulator's kill task kills them; the samples see it.
    text = wait_shown(drive, card, "Matching sessions now 0* (6 when it started, peak 6) █")
    assert re.search(r"peak 6\) █+▁+ · \d+ samples", text), text
    wait_until(lambda: _samples(shown(drive, card)) >= 3, "three samples")
    assert "Stop" in str(_buttons(drive, card))

    drive.click("stop", card, APPROVER)
    drive.wait_card(card, "Stopped")
    summary = drive.wait_thread(card, "Summary of kill task")
    assert "it was stopped after" in summary and f"<@{APPROVER}>" in summary
    assert "Matching sessions: 6 at the start, peak 6, 0 at the end" in summary
    assert "The chart of matching sessions over time is above." in summary
    uploads = _upload_calls(drive, f"killtask-{card.request_id}.png")
    assert [c.method for c in uploads] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    complete = uploads[-1].args
    assert complete["channel_id"] == card.channel and complete["thread_ts"] == card.ts
    data = drive.slack.files[complete["files"][0]["id"]]["data"]
    assert data.startswith(PNG) and len(data) > 1000
    assert "Matching sessions at the end 0*" in shown(drive, card)
    assert text  # the trend was shown while it ran


def _samples(text: str) -> int:
    for part in text.split("·"):
        words = part.split()
        if len(words) >= 2 and words[1].startswith("sample") and words[0].isdigit():
            return int(words[0])
    return 0


def _upload_calls(driver: Driver, filename: str) -> list:
    calls = driver.slack.calls
    start = next(
        i
        for i, c in enumerate(calls)
        if c.method == "files.getUploadURLExternal" and c.args.get("filename") == filename
    )
    file_id = calls[start].response["file_id"]
    return [calls[start]] + [
        c
        for c in calls[start + 1 :]
        if c.args.get("file_id") == file_id
        or any(f.get("id") == file_id for f in c.args.get("files") or [])
    ]


def test_a_failed_upload_still_posts_the_summary(drive: Driver) -> None:
    instance = new_instance()
    drive.dbbrain.set_process_list(instance, [row(6000 + i) for i in range(4)])
    card = drive.file(instance, "duration=2 user=app command=Query")
    wait_shown(drive, card, "*4 sessions match right now*")
    drive.slack.script("upload", {"status": 500})
    drive.click("approve", card, APPROVER)
    drive.wait_card(card, "Finished", timeout=20)
    summary = drive.wait_thread(card, "Summary of kill task")
    assert "it finished after 2 s" in summary
    assert "4 at the start" in summary
    assert "The chart could not be uploaded to Slack" in summary
    assert "the numbers above are complete" in summary
    failed = [c for c in drive.slack.calls_of("upload") if c.fault]
    assert failed and failed[-1].response == {"status": 500}


# ---------------------------------------------------------------- DBbrain's diagnosis


def test_the_diagnosis_line_lists_last_hours_events(drive: Driver) -> None:
    instance = new_instance()
    now = time.time()
    event = {"InstanceId": instance, "EventId": 1, "DiagType": "Performance",
             "Outline": "DDL waits for a lock", "Metric": "", "Region": "ap-guangzhou"}  # fmt: skip
    drive.dbbrain.diag_events[instance] = [
        {**event, "Severity": 2, "DiagItem": "DDLWaitMDL", "StartTime": dbbrain_time(now - 600),
         "EndTime": dbbrain_time(now - 300)},
        {**event, "Severity": 3, "DiagItem": "<!channel> HighActiveSession",
         "StartTime": dbbrain_time(now - 120), "EndTime": dbbrain_time(now)},
        {**event, "Severity": 5, "DiagItem": "Healthy", "StartTime": dbbrain_time(now - 60),
         "EndTime": dbbrain_time(now)},
        {**event, "Severity": 1, "DiagItem": "OutOfMemory", "StartTime": dbbrain_time(now - 7200),
         "EndTime": dbbrain_time(now - 7100)},
    ]  # fmt: skip
    drive.dbbrain.set_process_list(instance, [row(7000)])
    card = drive.file(instance, "duration=10m user=app")
    text = wait_shown(drive, card, "DBbrain diagnosis, last hour:")
    line = next(line for line in text.splitlines() if "DBbrain diagnosis" in line)
    assert f"severe · DDLWaitMDL ({dbbrain_time(now - 600)})" in line
    assert "warning · &lt;!channel&gt; HighActiveSession" in line
    assert line.index("DDLWaitMDL") < line.index("HighActiveSession")  # most severe first
    assert "Healthy" not in line and "OutOfMemory" not in line  # healthy, or over an hour ago
    calls = [
        c
        for c in drive.dbbrain.calls_of("DescribeDBDiagEvents")
        if c.params.get("InstanceIds") == [instance]
    ]
    assert calls and calls[0].params["EndTime"] > calls[0].params["StartTime"]
    drive.click("reject", card, APPROVER)


# ---------------------------------------------------------------- real MariaDB sessions


@pytest.fixture
def mariadb(mysql_url: str) -> Iterator[dict[str, Any]]:
    """Two throwaway accounts and a database of their own; every session killed at the end."""
    import pymysql

    args = parse_mysql_url(mysql_url)
    root = pymysql.connect(**args, autocommit=True)
    suffix = secrets.token_hex(3)
    db = f"kt_effect_{suffix}"
    users = {f"kt_app_{suffix}": secrets.token_hex(8), f"kt_etl_{suffix}": secrets.token_hex(8)}
    with root.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.orders (id INT PRIMARY KEY, total INT)")
        cur.execute(f"INSERT INTO {db}.orders VALUES (1, 10), (2, 20)")
        for name, password in users.items():
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
            cur.execute(f"GRANT ALL ON {db}.* TO %s@'%%'", (name,))
    opened: list[Any] = []

    def connect(user: str) -> Any:
        conn = pymysql.connect(
            host=args["host"], port=args["port"], user=user, password=users[user], database=db,
            autocommit=True,
        )  # fmt: skip
        opened.append(conn)
        return conn

    yield {"url": mysql_url, "root": root, "db": db, "users": list(users), "connect": connect}
    with root.cursor() as cur:
        for conn in opened:
            with contextlib.suppress(pymysql.err.Error):
                cur.execute(f"KILL {int(conn.thread_id())}")
        for name in users:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (name,))
        cur.execute(f"DROP DATABASE IF EXISTS {db}")
    for conn in opened:
        with contextlib.suppress(Exception):
            conn.close()
    root.close()


def run_in_thread(conn: Any, sql: str) -> dict[str, Any]:
    """Run one statement on its own thread; the result says how it ended."""
    outcome: dict[str, Any] = {"done": threading.Event(), "error": None}

    def run() -> None:
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        except Exception as exc:  # a killed session ends here
            outcome["error"] = exc
        finally:
            outcome["done"].set()

    threading.Thread(target=run, daemon=True).start()
    return outcome


def session_ids(root: Any, user: str, command: str | None = None) -> set[int]:
    with root.cursor() as cur:
        cur.execute(
            "SELECT ID, COMMAND FROM information_schema.PROCESSLIST WHERE USER = %s", (user,)
        )
        return {int(i) for i, c in cur.fetchall() if command is None or c == command}


def alive(conn: Any) -> bool:
    try:
        conn.ping(reconnect=False)
    except Exception:
        return False
    return True


def test_one_shot_kills_exactly_the_matching_mariadb_sessions(
    drive: Driver, mariadb: dict[str, Any]
) -> None:
    app, etl = mariadb["users"]
    connect, root = mariadb["connect"], mariadb["root"]
    busy = [connect(app) for _ in range(3)]
    idle_app, busy_etl = connect(app), connect(etl)
    running = [run_in_thread(conn, "SELECT SLEEP(60)") for conn in busy]
    other = run_in_thread(busy_etl, "SELECT SLEEP(60)")
    doomed = {conn.thread_id() for conn in busy}
    wait_until(lambda: doomed <= session_ids(root, app, "Query"), "the sleepers to show")

    instance = new_instance()
    drive.dbbrain.set_backend(instance, MySQLSessions(mariadb["url"]))
    card = drive.file(instance, f"duration=once user={app} command=Query")
    wait_shown(drive, card, "*3 sessions match right now*")
    drive.click("approve", card, APPROVER)
    text = card_text(drive.wait_card(card, "Killed 3 sessions"))

    for outcome in running:
        wait_until(outcome["done"].is_set, "a killed session to end")
        assert outcome["error"] is not None
    assert alive(idle_app) and not other["done"].is_set()
    assert busy_etl.thread_id() in session_ids(root, etl, "Query")
    prepared = kill_calls(drive.dbbrain, instance, "Prepare")
    assert [set(c.params["Threads"]) for c in prepared] == [doomed]
    for thread_id in doomed:
        assert f"• #{thread_id} {app}@" in text
    summary = drive.wait_thread(card, "Summary of one-shot kill")
    assert "Matching sessions before: 3, after: 0" in summary


def test_the_lock_warning_names_the_holder_of_a_real_metadata_lock(
    drive: Driver, mariadb: dict[str, Any]
) -> None:
    app, etl = mariadb["users"]
    connect, root, db = mariadb["connect"], mariadb["root"], mariadb["db"]
    holder = connect(etl)
    with holder.cursor() as cur:  # an open transaction keeps its metadata lock while it idles
        cur.execute("BEGIN")
        cur.execute("SELECT * FROM orders")
    time.sleep(1.1)  # so the holder has run longer than the waiters, in whole seconds
    alter = connect(app)
    waiting = [run_in_thread(alter, "ALTER TABLE orders ADD COLUMN note INT")]
    wait_until(lambda: alter.thread_id() in session_ids(root, app, "Query"), "the ALTER")
    readers = [connect(app) for _ in range(2)]
    waiting += [run_in_thread(conn, "SELECT * FROM orders") for conn in readers]
    wait_until(lambda: len(session_ids(root, app, "Query")) == 3, "the readers to wait")

    instance = new_instance()
    drive.dbbrain.set_backend(instance, MySQLSessions(mariadb["url"]))
    card = drive.file(instance, f"duration=10m user={app} command=Query")
    text = wait_shown(drive, card, "wait on a lock")
    assert "*3 of 3 sessions wait on a lock*" in text
    assert f"“Waiting for table metadata lock”, on `{db}`" in text
    assert "By state: Waiting for table metadata lock 3" in text
    assert "Killing the waiters will not help" in text
    assert f"Likely holder: *#{holder.thread_id()}* {etl}@" in text
    drive.click("reject", card, APPROVER)
    holder.commit()  # the waiters go on; the fixture ends them
    for outcome in waiting:
        wait_until(outcome["done"].is_set, "the waiters to finish")


def test_effect_policy_file_is_valid(tmp_path: Path) -> None:
    from bot.policy import load_policy

    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(EFFECT_POLICY)
    policy = load_policy(policy_file)
    assert (policy.sample_seconds, policy.once_max_sessions) == (0.2, 150)
