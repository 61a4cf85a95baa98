"""`python -m bot audit`: every field, the filters, both formats, SQLite and PostgreSQL, read
in batches; and the log the real bot wrote, exported."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.audit import AuditEntry
from bot.export import FIELDS, ExportError, parse_when
from bot.store import Store, make_engine
from tests.conftest import APPROVER, ROOT, BotProcess, Driver, new_instance

NOV_1 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()


def export(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK", "DATABASE"))}
    env |= {"DATABASE_URL": database_url, "DOTENV_PATH": "/nonexistent.env"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "audit", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


class At:
    def __init__(self) -> None:
        self.now = NOV_1

    def __call__(self) -> float:
        return self.now


def seeded(url: str) -> Store:
    at = At()
    store = Store(make_engine(url), clock=at)
    store.create_schema()
    for day, instance, action in [
        (-2, "cdb-old", "request"),
        (0, "cdb-one", "request"),
        (1, "cdb-two", "create_kill_task"),
        (3, "cdb-one", "cancel_kill_task"),
    ]:
        at.now = NOV_1 + day * 86400 + 60
        store.audit(
            AuditEntry(
                "U0ACTOR", action, "done", 7, "C0INC", instance, f"req-{day}", detail='a,"b"\nc'
            )
        )  # fmt: skip
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    return request.getfixturevalue("postgres_url")


def test_every_field_in_csv_and_the_filters(database_url: str) -> None:
    seeded(database_url).engine.dispose()
    code, out, err = export(database_url)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0]) == FIELDS and len(rows) == 4
    assert rows[1] == {
        "id": "2", "at": "2026-11-01T00:01:00.000+00:00", "actor_id": "U0ACTOR",
        "action": "request", "outcome": "done", "request_id": "7", "channel_id": "C0INC",
        "instance_id": "cdb-one", "cloud_request_id": "req-0", "detail": 'a,"b"\nc',
    }  # fmt: skip
    assert "exported 4 audit entries" in err
    code, out, _ = export(
        database_url, "--since", "2026-11-01", "--until", "2026-11-04", "--format", "jsonl"
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["instance_id"] for line in lines] == ["cdb-one", "cdb-two"]
    assert lines[1]["cloud_request_id"] == "req-1" and lines[1]["request_id"] == 7
    _, out, _ = export(database_url, "--instance", "cdb-one", "--format", "jsonl")
    assert [json.loads(x)["action"] for x in out.splitlines()] == ["request", "cancel_kill_task"]


def test_rows_are_read_in_batches(database_url: str) -> None:
    store = seeded(database_url)
    assert [row["id"] for row in store.audit_rows(batch=1)] == [1, 2, 3, 4]
    assert [row["id"] for row in store.audit_rows(since=NOV_1, batch=2)] == [2, 3, 4]
    store.engine.dispose()


def test_times_ago_dates_and_mistakes() -> None:
    now = NOV_1 + 10 * 86400
    assert parse_when("7d", "--since", now) == now - 7 * 86400
    assert parse_when("12h", "--since", now) == now - 12 * 3600
    assert parse_when("30m", "--since", now) == now - 1800
    assert parse_when("2026-11-01", "--since", now) == NOV_1
    assert parse_when("2026-11-01T09:00:00+09:00", "--since", now) == NOV_1
    with pytest.raises(ExportError, match="--since 'last week'"):
        parse_when("last week", "--since", now)


def test_a_bad_flag_is_explained(tmp_path: Path) -> None:
    code, out, err = export(f"sqlite:///{tmp_path / 'x.db'}", "--since", "yesterday")
    assert code == 2 and out == "" and "7d" in err


@pytest.mark.e2e
def test_the_log_the_real_bot_wrote(bot: BotProcess, driver: Driver) -> None:
    instance = new_instance()
    card = driver.file(instance)
    driver.click("approve", card, APPROVER)
    driver.wait_card(card, "Running")
    driver.click("stop", card, APPROVER)
    driver.wait_card(card, "Stopped")
    code, out, err = export(bot.env["DATABASE_URL"], "--since", "1h", "--instance", instance,
                            "--format", "jsonl")  # fmt: skip
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    done = [(r["action"], r["outcome"]) for r in rows]
    assert done[0] == ("request", "filed") and ("approve", "recorded") in done
    assert ("create_kill_task", "running") in done and ("cancel_kill_task", "stopped") in done
    running = next(r for r in rows if r["outcome"] == "running")
    assert running["cloud_request_id"] and running["request_id"] == card.request_id
    assert {r["instance_id"] for r in rows} == {instance}
