"""The tables, and the engine as users write its URL. Only the store imports SQLAlchemy."""

from __future__ import annotations

import threading
import weakref
from contextlib import AbstractContextManager, nullcontext

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url

metadata = MetaData()

kill_requests = Table(
    "kill_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Slack's trigger or view id: a retried delivery of the same command files nothing new.
    Column("source_key", String(200), unique=True, nullable=True),
    Column("channel_id", String(32), nullable=False),
    Column("requester_id", String(32), nullable=False),
    Column("instance_id", String(64), nullable=False),
    Column("product", String(16), nullable=False),
    Column("duration", Integer, nullable=False),
    Column("spec", Text, nullable=False),
    Column("break_glass", Boolean, nullable=False, default=False),
    Column("state", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("message_ts", String(32)),
    Column("decided_by", String(32)),
    Column("decided_at", Float),
    Column("started_at", Float),
    Column("ends_at", Float),
    Column("cloud_request_id", String(64)),
    Column("error_code", String(100)),
    Column("error_message", Text),
    Column("stopped_by", String(32)),
    Column("stopped_at", Float),
    # The process that claimed the start; if it stops beating, the start is lost (unknown).
    Column("owner", String(64)),
    # The card is re-rendered from this row; card_rev counts changes, card_synced_rev the last
    # one Slack accepted, so a card that missed an update catches up later.
    Column("card_rev", Integer, nullable=False, default=0),
    Column("card_synced_rev", Integer, nullable=False, default=0),
    # card_rev > card_synced_rev, kept as its own indexed column: the tick looks for these rows
    # and a comparison of two columns cannot use an index.
    Column("card_behind", Boolean, nullable=False, default=True),
    # When a process last took on posting the card; a stale claim lets another one retry.
    Column("card_claimed_at", Float),
    Column("preview", Text),  # the last live preview (JSON), shown on the card
    # Where the task runs: the policy's account name and the instance's region, for the card.
    Column("account", String(40)),
    Column("region", String(40)),
    # A running task's effect (JSON: matching sessions at the start, now, the trend) for the
    # card; the samples themselves are in effect_samples.
    Column("effect", Text),
    Column("kill_result", Text),  # what a one-shot kill did (JSON)
    # When a replica last claimed a sample of this task: one sample per period, one replica.
    Column("sampled_at", Float),
    # When the one reminder and the one escalation went out, and the last "still running"
    # reminder: each is claimed by a conditional UPDATE, so one replica sends it.
    Column("reminded_at", Float),
    Column("escalated_at", Float),
    Column("running_reminded_at", Float),
    Index("ix_kill_requests_state_expires", "state", "expires_at"),
    Index("ix_kill_requests_state_ends", "state", "ends_at"),
    Index("ix_kill_requests_instance", "instance_id", "product", "state"),
    Index("ix_kill_requests_channel", "channel_id", "state"),
    Index("ix_kill_requests_card_behind", "card_behind"),
    Index("ix_kill_requests_message_ts", "message_ts"),
)

# Each running replica beats here every tick, so others can tell a crashed one from a slow one.
bot_processes = Table(
    "bot_processes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)

# Every DBbrain call any replica makes, so together they stay under DBbrain's 20 per second.
cloud_calls = Table(
    "cloud_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    # A stop or a start: reads may fill only part of each second, these may use all of it.
    Column("urgent", Boolean, nullable=False, default=False),
    Index("ix_cloud_calls_at", "at"),
)
# One row, updated first in each limiter transaction: a lock every database understands.
rate_lock = Table(
    "rate_lock",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
)

# DBbrain's instance list (DescribeDiagDBInstances) of every account, shared by replicas.
instances = Table(
    "instances",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("region", String(40), nullable=False),
    Column("product", String(16), nullable=False),
    Column("health_score", Integer),
    Column("event_count", Integer),
    Column("account", String(40), nullable=False),
    Column("fetched_at", Float, nullable=False),
)


# What a running kill task did: the matching and total sessions, read every sample period.
effect_samples = Table(
    "effect_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("matching", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Index("ix_effect_samples_request", "request_id", "at"),
)

approvals = Table(
    "approvals",
    metadata,
    Column("request_id", Integer, primary_key=True),
    Column("user_id", String(32), primary_key=True),
    Column("at", Float, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor_id", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("request_id", Integer),
    Column("channel_id", String(32)),
    Column("instance_id", String(64)),
    Column("cloud_request_id", String(64)),
    Column("detail", Text),
    Index("ix_audit_request", "request_id"),
)


class StoreError(Exception):
    """The database could not be used just now (down, locked, timed out)."""


_WRITERS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def write_lock(engine: Engine) -> AbstractContextManager[object]:
    """One writer at a time within this process, for SQLite. SQLite lets one writer in and makes
    the others sleep in growing steps until it is free, so threads racing to write add tens of
    milliseconds to an ack; waiting in line here costs only the writes ahead. PostgreSQL locks
    rows itself and needs nothing here."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _GUARD:
        return _WRITERS.setdefault(engine, threading.RLock())


def make_engine(url: str) -> Engine:
    """An engine for the URL as users write it (postgresql://… uses psycopg2)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=False
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            if parsed.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            # In WAL mode a commit survives the process being killed at any moment; only a
            # power cut may lose the last ones. Replicas use PostgreSQL.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    # Enough for every thread that may hold a connection: 16 workers, the ticker, the limiter.
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=10)
