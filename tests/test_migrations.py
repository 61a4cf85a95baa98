"""Alembic migrations build exactly the schema the store expects, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bot.migrate import current, head, upgrade
from bot.store import make_engine, metadata
from tests.conftest import PROXY_VARS, ROOT


def assert_schema_matches(url: str) -> None:
    engine = make_engine(url)
    try:
        assert current(engine) is None
        upgrade(engine)
        upgrade(engine)  # a second run (another replica starting) changes nothing
        assert current(engine) == head()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_migrations_on_sqlite(tmp_path: Path) -> None:
    assert_schema_matches(f"sqlite:///{tmp_path / 'k.db'}")


def test_migrations_on_postgresql(postgres_url: str) -> None:
    assert_schema_matches(postgres_url)


def run_bot(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_command_and_the_start_flag(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    settings = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s" * 16,
        "TENCENTCLOUD_SECRET_ID": "AKID1",
        "TENCENTCLOUD_SECRET_KEY": "k" * 16,
        "POLICY_FILE": str(ROOT / "policy.example.yaml"),
        "DATABASE_URL": url,
        "MIGRATE_ON_START": "false",
        "DOTENV_PATH": str(tmp_path / "none.env"),
    }
    refused = run_bot([], settings)
    assert refused.returncode == 2
    assert "run `python -m bot migrate`" in refused.stderr
    migrated = run_bot(["migrate"], {"DATABASE_URL": url, "DOTENV_PATH": settings["DOTENV_PATH"]})
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema is at {head()}" in migrated.stdout


@pytest.mark.parametrize(
    "url", ["postgresql://nobody@127.0.0.1:1/none", "sqlite:////no/such/dir/x.db"]
)
def test_unusable_database_is_one_clear_line(url: str, tmp_path: Path) -> None:
    result = run_bot(["migrate"], {"DATABASE_URL": url, "DOTENV_PATH": str(tmp_path / "x")})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("killtask: cannot use DATABASE_URL")
    assert len(result.stderr.strip().splitlines()) == 1


def test_shared_rate_limit_counts_every_replica(tmp_path: Path) -> None:
    """Two limiters on one database (two replicas) never let 21 calls, nor 15 reads, into one
    second."""
    from bot.store import SharedRateLimit

    engine = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    upgrade(engine)
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    replicas = [SharedRateLimit(engine, 20, clock=lambda: now[0], sleep=sleep) for _ in range(2)]
    granted: list[tuple[float, bool]] = []
    for i in range(50):
        urgent = i % 3 == 0  # a stop or start now and then among the reads
        replicas[i % 2].acquire(urgent)
        granted.append((now[0], urgent))
    for t, _ in granted:
        in_second = [urgent for g, urgent in granted if t <= g < t + 1.0]
        assert len(in_second) <= 20
        assert in_second.count(False) <= 14
    assert granted[19][0] == 1000.0 and granted[20][0] >= 1001.0
    engine.dispose()
