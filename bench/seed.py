"""Databases for the benchmark: fresh ones, past history, and pending requests to click.

Rows are written with the bot's own tables (`bot.store`) and schema (`bot.migrate.upgrade`), the
way the bot itself would have left them, but with plain multi-row INSERTs so 100,000 take
seconds, not the hours filing them through the bot's 20-per-second DBbrain limit would.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, insert, inspect, literal, select, text, update
from sqlalchemy.engine import Engine

from bot.killtask import build_spec, split_line
from bot.migrate import upgrade
from bot.store import audit_log, kill_requests, make_engine
from bot.store.tables import instances as instance_list

PAST_STATES = ("finished", "expired", "rejected", "stopped", "failed")
# Columns that newer schemas add, with the value a row whose card is up to date holds.
UP_TO_DATE = {"card_behind": False}


def up_to_date(row: dict) -> dict:
    """`row` plus the newer columns this schema has, set as the bot sets them once the card
    shows the row's latest state."""
    return row | {k: v for k, v in UP_TO_DATE.items() if k in kill_requests.c}


BATCH = 5_000


def spec_json(text_line: str) -> str:
    """The stored spec of `/killtask <text_line>`, built by the bot's own parser."""
    spec = build_spec(split_line(text_line).fields, frozenset())
    return json.dumps(spec.to_dict(), ensure_ascii=False)


def command_text(instance: str) -> str:
    return f"{instance} duration=1m user=app command=Query reason=bench"


@dataclass(frozen=True)
class Pending:
    request_id: int
    instance: str
    channel: str
    ts: str


class Database:
    """One database for one benchmark step: a SQLite file, or a PostgreSQL schema of its own."""

    def __init__(self, url: str, schema: str | None = None, admin_url: str | None = None):
        self.url = url
        self.schema = schema
        self.admin_url = admin_url
        self.listed: set[str] = set()  # instances already in the bot's cached instance list
        self.dropped = False

    @classmethod
    def sqlite(cls, folder: Path, name: str) -> Database:
        path = folder / f"{name}.db"
        for old in folder.glob(f"{name}.db*"):
            old.unlink()
        return cls(f"sqlite:///{path}")

    @classmethod
    def postgres(cls, base_url: str) -> Database:
        schema = f"kt_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(base_url, connect_args={"connect_timeout": 3})
        try:
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
        finally:
            admin.dispose()
        separator = "&" if "?" in base_url else "?"
        return cls(f"{base_url}{separator}options=-csearch_path%3D{schema}", schema, base_url)

    @property
    def kind(self) -> str:
        return "PostgreSQL" if self.schema else "SQLite"

    @property
    def path(self) -> Path | None:
        return None if self.schema else Path(self.url.removeprefix("sqlite:///"))

    def engine(self) -> Engine:
        return make_engine(self.url)

    def create_schema(self) -> None:
        engine = self.engine()
        try:
            upgrade(engine)
        finally:
            engine.dispose()

    def drop(self) -> None:
        self.dropped = True
        if self.schema and self.admin_url:
            admin = create_engine(self.admin_url)
            try:
                with admin.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE"))
            finally:
                admin.dispose()

    def size(self) -> int:
        """Bytes the bot's data takes: the SQLite file (WAL folded in first), or the total
        relation size (table, indexes, TOAST) of every table in the schema."""
        engine = self.engine()
        try:
            with engine.connect() as conn:
                if self.schema is None:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                    assert self.path is not None
                    return self.path.stat().st_size
                return int(
                    conn.execute(
                        text(
                            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) "
                            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = :schema AND c.relkind = 'r'"
                        ),
                        {"schema": self.schema},
                    ).scalar_one()
                )
        finally:
            engine.dispose()

    def has_schema(self) -> bool:
        engine = self.engine()
        try:
            return inspect(engine).has_table(instance_list.name)
        finally:
            engine.dispose()

    def seed_instances(self, ids: list[str], fresh: bool = False) -> None:
        """Put instances in the bot's cached instance list, as its periodic read of DBbrain's
        list would have: in an estate, the instance a person files for is already listed.
        `fresh`: the whole list was read just now (so a bot starting does not read it again)."""
        new = [i for i in dict.fromkeys(ids) if i not in self.listed]
        if self.dropped or not (new or fresh):
            return
        now = time.time()
        rows = [
            {"instance_id": i, "name": i, "region": "ap-guangzhou", "product": "mysql",
             "health_score": 100, "event_count": 0, "account": "default", "fetched_at": now}
            for i in new
        ]  # fmt: skip
        engine = self.engine()
        try:
            if fresh and self.listed:
                with engine.begin() as conn:
                    conn.execute(update(instance_list).values(fetched_at=now))
            for start in range(0, len(rows), BATCH):
                with engine.begin() as conn:
                    conn.execute(insert(instance_list), rows[start : start + BATCH])
        finally:
            engine.dispose()
        self.listed.update(new)

    def states(self, instances: list[str]) -> dict[str, str]:
        """The state of the newest request on each of `instances` that has one."""
        engine = self.engine()
        k = kill_requests.c
        try:
            with engine.connect() as conn:
                query = select(k.instance_id, k.state).where(k.instance_id.in_(instances))
                rows = conn.execute(query.order_by(k.id)).all()
        finally:
            engine.dispose()
        return {instance: str(state) for instance, state in rows}

    # ------------------------------------------------------------ rows

    def seed_past(self, n: int, channels: int = 50) -> None:
        """`n` requests that ended long ago, spread over channels, with their audit rows."""
        if n <= 0:
            return
        now = time.time()
        spec = spec_json(command_text("cdb-past0000000"))
        engine = self.engine()
        try:
            for start in range(0, n, BATCH):
                rows = []
                for i in range(start, min(n, start + BATCH)):
                    created = now - 86_400 * 30 + i * (86_400 * 29 / n)
                    instance = f"cdb-past{i:07d}"
                    rows.append(
                        {
                            "source_key": f"cmd:past-{i}",
                            "channel_id": f"C0PAST{i % channels:04d}",
                            "requester_id": "U0PASTREQ",
                            "instance_id": instance,
                            "product": "mysql",
                            "duration": 60,
                            "spec": spec.replace("cdb-past0000000", instance),
                            "break_glass": False,
                            "state": PAST_STATES[i % len(PAST_STATES)],
                            "created_at": created,
                            "expires_at": created + 1800,
                            "message_ts": f"{int(created)}.{i % 1_000_000:06d}",
                            "decided_by": "U0PASTOK",
                            "decided_at": created + 60,
                            "card_rev": 4,
                            "card_synced_rev": 4,
                            "card_claimed_at": created,
                        }
                    )
                with engine.begin() as conn:
                    conn.execute(insert(kill_requests), [up_to_date(row) for row in rows])
            # Two audit rows per past request (filed, and how it ended), made in the database.
            past = kill_requests.c.source_key.like("cmd:past-%")
            columns = ["at", "actor_id", "action", "outcome", "request_id"]
            columns += ["channel_id", "instance_id", "detail"]
            k = kill_requests.c
            with engine.begin() as conn:
                for action, outcome, actor in (
                    ("request", literal("filed"), k.requester_id),
                    ("finish", k.state, k.decided_by),
                ):
                    chosen = select(
                        k.created_at,
                        actor,
                        literal(action),
                        outcome,
                        k.id,
                        k.channel_id,
                        k.instance_id,
                        literal("seeded past request"),
                    ).where(past)
                    conn.execute(insert(audit_log).from_select(columns, chosen))
        finally:
            engine.dispose()

    def seed_pending(
        self, n: int, channel: str, requester: str, tag: str, expires_in: float = 4 * 3600
    ) -> list[Pending]:
        """`n` pending requests whose cards were posted, ready for an Approve click."""
        if n <= 0:
            return []
        now = time.time()
        instances = [f"cdb-{tag}{i:06d}{uuid.uuid4().hex[:6]}" for i in range(n)]
        template = spec_json(command_text("cdb-template0000"))
        engine = self.engine()
        try:
            made: list[Pending] = []
            for start in range(0, n, BATCH):
                chunk = instances[start : start + BATCH]
                rows = [
                    {
                        "source_key": f"cmd:{tag}-{uuid.uuid4().hex}",
                        "channel_id": channel,
                        "requester_id": requester,
                        "instance_id": instance,
                        "product": "mysql",
                        "duration": 60,
                        "spec": template.replace("cdb-template0000", instance),
                        "break_glass": False,
                        "state": "pending",
                        "created_at": now,
                        "expires_at": now + expires_in,
                        "message_ts": f"1900000000.{start + k:06d}",
                        "card_rev": 1,
                        "card_synced_rev": 1,
                        "card_claimed_at": now,
                    }
                    for k, instance in enumerate(chunk)
                ]
                returning = insert(kill_requests).returning(
                    kill_requests.c.id, kill_requests.c.instance_id, kill_requests.c.message_ts
                )
                with engine.begin() as conn:
                    found = conn.execute(returning, [up_to_date(row) for row in rows]).all()
                made += [Pending(int(i), inst, channel, ts) for i, inst, ts in found]
            made.sort(key=lambda p: p.request_id)
        finally:
            engine.dispose()
        self.seed_instances(instances)  # each was looked up when it was filed
        return made


def store_timings(url: str, pending: Pending, repeat: int = 20) -> dict[str, float | None]:
    """Median milliseconds of the store calls the bot makes per click and per tick, against
    this database as it is; None for a call this version of the store does not have."""
    from bot.store import Store

    engine = make_engine(url)
    store = Store(engine)
    now = time.time()
    probes = {
        "get (per click)": lambda: store.get(pending.request_id),
        "active_on (per filing)": lambda: store.active_on(pending.instance, "mysql"),
        "open_in_channel (list)": lambda: store.open_in_channel(pending.channel),
        "due_to_expire (tick)": lambda: store.due_to_expire(now),
        "due_to_finish (tick)": lambda: store.due_to_finish(now),
        "lost_starts (tick)": lambda: store.lost_starts(now - 30, now - 60),
        "cards_behind (tick)": lambda: store.cards_behind(),
        "unposted_cards (tick)": lambda: store.unposted_cards(now - 30, now - 5),
        "orphaned_approvals (tick)": lambda: store.orphaned_approvals(now - 5, now - 60),
        "missing_previews (tick)": lambda: store.missing_previews(now - 5),
    }
    found: dict[str, float | None] = {}
    try:
        for name, probe in probes.items():
            try:
                probe()
                times = []
                for _ in range(repeat):
                    began = time.perf_counter()
                    probe()
                    times.append(time.perf_counter() - began)
                found[name] = statistics.median(times)
            except (AttributeError, TypeError):
                found[name] = None
    finally:
        engine.dispose()
    return found
