"""Rehearsal mode, driven from a script as a newcomer would run it: `python -m bot` with no Slack
tokens, real sessions on the MariaDB server, a kill task that kills exactly the matching ones."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pymysql
import pytest

from standins.sessions import parse_mysql_url
from tests.conftest import PROXY_VARS, ROOT

pytestmark = pytest.mark.e2e

SCRIPT = """\
# seed, preview, file, approve as a second person, look, stop
sessions
/killtask preview cdb-rehearsal user=rehearsal_app command=Query
/killtask cdb-rehearsal duration=5m user=rehearsal_app command=Query reason="slow reports"
as U02APPROVER
approve 1
wait 4
sessions
stop 1
"""


ONCE_SCRIPT = """\
# a one-shot kill: exactly the busy app sessions die, once
sessions
/killtask cdb-rehearsal duration=once user=rehearsal_app command=Query reason="stuck reports"
as U02APPROVER
approve 1
wait 2
sessions
"""


def rehearse(tmp_path: Path, mysql: str, *args: str, steps: str = SCRIPT) -> subprocess.Popen:
    script = tmp_path / "script.txt"
    script.write_text(steps)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "TENCENTCLOUD_")) and k not in PROXY_VARS
    }
    env.update(REHEARSAL_MYSQL_URL=mysql, DOTENV_PATH=str(tmp_path / "none.env"))
    return subprocess.Popen(
        [sys.executable, "-m", "bot", *args, "--script", str(script)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def alive(admin: pymysql.connections.Connection) -> Counter:
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT USER, COMMAND FROM information_schema.PROCESSLIST WHERE USER LIKE 'rehearsal%'"
        )
        return Counter(f"{user} {command}" for user, command in cursor.fetchall())


def test_rehearsal_kills_exactly_the_matching_sessions(tmp_path: Path, mysql_url: str) -> None:
    admin = pymysql.connect(**parse_mysql_url(mysql_url), autocommit=True)
    seen: list[Counter] = []
    process = rehearse(tmp_path, mysql_url, "--seed")

    def watch() -> None:  # the server's own view, independent of the bot and the emulator
        while process.poll() is None:
            seen.append(alive(admin))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        transcript, _ = process.communicate(timeout=180)
    finally:
        watcher.join()
        admin.close()
    assert process.returncode == 0, transcript
    assert transcript.startswith("killtask rehearsal mode")
    assert "Seeded 32 sessions" in transcript
    assert "*8 sessions match right now*" in transcript  # the preview
    assert "Kill-task request #1 · Running" in transcript
    assert "DBbrain RequestId: `" in transcript
    assert "with 8 matching sessions seen just before" in transcript
    assert "Kill-task request #1 · Stopped" in transcript
    before = (
        "Live sessions: rehearsal_app Query: 8 · rehearsal_app Sleep: 10 · "
        "rehearsal_batch Query: 6 · rehearsal_batch Sleep: 2 · rehearsal_report Sleep: 6"
    )
    after = (
        "Live sessions: rehearsal_app Sleep: 10 · rehearsal_batch Query: 6 · "
        "rehearsal_batch Sleep: 2 · rehearsal_report Sleep: 6"
    )
    assert before in transcript and after in transcript
    # the server itself saw the busy app sessions die while every other one lived on
    full = Counter(
        {
            "rehearsal_app Query": 8,
            "rehearsal_app Sleep": 10,
            "rehearsal_batch Query": 6,
            "rehearsal_batch Sleep": 2,
            "rehearsal_report Sleep": 6,
        }
    )
    assert full in seen
    survivors = full - Counter({"rehearsal_app Query": 8})
    assert survivors in seen
    assert alive_after(mysql_url) == Counter()  # the rehearsal cleaned up after itself


def alive_after(url: str) -> Counter:
    admin = pymysql.connect(**parse_mysql_url(url), autocommit=True)
    try:
        return alive(admin)
    finally:
        admin.close()


def test_rehearsal_without_mysql_runs_on_a_simulated_list(tmp_path: Path) -> None:
    process = rehearse(tmp_path, "mysql://root@127.0.0.1:1/")
    transcript, _ = process.communicate(timeout=120)
    assert process.returncode == 0, transcript
    assert "the sessions are simulated" in transcript
    assert "*10 sessions match right now*" in transcript
    assert "Kill-task request #1 · Running" in transcript
    assert "Live sessions: rehearsal_app Sleep: 12 · rehearsal_batch Query: 6" in transcript


def test_rehearsal_one_shot_kills_exactly_the_matching_sessions(
    tmp_path: Path, mysql_url: str
) -> None:
    process = rehearse(tmp_path, mysql_url, "--seed", steps=ONCE_SCRIPT)
    transcript, _ = process.communicate(timeout=180)
    assert process.returncode == 0, transcript
    assert "Kill-task request #1 · Killed 8 sessions" in transcript
    assert "Summary of one-shot kill #1" in transcript
    assert "Matching sessions before: 8, after: 0" in transcript
    after = (
        "Live sessions: rehearsal_app Sleep: 10 · rehearsal_batch Query: 6 · "
        "rehearsal_batch Sleep: 2 · rehearsal_report Sleep: 6"
    )
    assert after in transcript
    assert alive_after(mysql_url) == Counter()
