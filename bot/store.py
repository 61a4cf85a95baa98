"""The store: the only module that imports SQLAlchemy. It owns the tables.

Every move that decides an outcome is one conditional UPDATE (`... WHERE state IN (...)`), so
whichever process or thread runs it first wins and every other one sees rowcount 0. SQLite is
the default; PostgreSQL works the same for several replicas.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

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
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Engine, RowMapping, make_url
from sqlalchemy.exc import IntegrityError

from bot.killtask import KillTaskSpec
from bot.requests import ACTIVE_STATES, OPEN_STATES, KillRequest, State, sources_of

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
    Index("ix_cloud_calls_at", "at"),
)
# One row, updated first in each limiter transaction: a lock every database understands.
rate_lock = Table(
    "rate_lock",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
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
            cursor.close()

        return engine
    # Enough for every thread that may hold a connection: 16 workers, the ticker, the limiter.
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=10)


class Store:
    def __init__(self, engine: Engine, clock=time.time):  # type: ignore[no-untyped-def]
        self.engine = engine
        self._clock = clock

    def create_schema(self) -> None:
        """Bring the schema to the newest migration (Alembic), creating it if needed."""
        from bot.migrate import upgrade

        upgrade(self.engine)

    # ------------------------------------------------------------ processes

    def heartbeat(self, process_id: str) -> None:
        now = self._clock()
        with self.engine.begin() as conn:
            updated = conn.execute(
                update(bot_processes)
                .where(bot_processes.c.id == process_id)
                .values(heartbeat_at=now)
            ).rowcount
            if not updated:
                conn.execute(
                    insert(bot_processes).values(id=process_id, started_at=now, heartbeat_at=now)
                )

    def lost_starts(self, stale_before: float, started_before: float) -> list[KillRequest]:
        """Starts whose owner stopped beating, or that have been starting for far too long."""
        alive = select(bot_processes.c.id).where(bot_processes.c.heartbeat_at >= stale_before)
        return self._select(
            select(kill_requests).where(
                kill_requests.c.state == State.STARTING.value,
                or_(
                    kill_requests.c.owner.is_(None),
                    kill_requests.c.owner.not_in(alive),
                    kill_requests.c.decided_at < started_before,
                ),
            )
        )

    # ------------------------------------------------------------ requests

    def insert_request(
        self,
        *,
        channel_id: str,
        requester_id: str,
        spec: KillTaskSpec,
        expires_at: float,
        break_glass: bool = False,
        source_key: str | None = None,
    ) -> KillRequest | None:
        """File a pending request; None when this Slack delivery was already filed."""
        row = {
            "source_key": source_key,
            "channel_id": channel_id,
            "requester_id": requester_id,
            "instance_id": spec.instance_id,
            "product": spec.product,
            "duration": spec.duration,
            "spec": json.dumps(spec.to_dict(), ensure_ascii=False),
            "break_glass": break_glass,
            "state": State.PENDING.value,
            "created_at": self._clock(),
            "expires_at": expires_at,
            "card_rev": 1,
            "card_synced_rev": 0,
            "card_behind": True,
            "card_claimed_at": self._clock(),
        }
        try:
            with self.engine.begin() as conn:
                new_id = conn.execute(insert(kill_requests).values(**row)).inserted_primary_key[0]
        except IntegrityError:
            return None
        return self.get(new_id)

    def get(self, request_id: int) -> KillRequest | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(kill_requests).where(kill_requests.c.id == request_id))
                .mappings()
                .first()
            )
            if row is None:
                return None
            return self._to_request(row, self._approvers(conn, [request_id]))

    def move(self, request_id: int, to: State, **fields: object) -> KillRequest | None:
        """Apply one move of the state machine; None when another click or replica won."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(kill_requests)
                .where(
                    kill_requests.c.id == request_id,
                    kill_requests.c.state.in_([s.value for s in sources_of(to)]),
                )
                .values(
                    state=to.value,
                    card_rev=kill_requests.c.card_rev + 1,
                    card_behind=True,
                    **fields,
                )
            )
            if result.rowcount != 1:
                return None
        return self.get(request_id)

    def set_message_ts(self, request_id: int, ts: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(kill_requests).where(kill_requests.c.id == request_id).values(message_ts=ts)
            )

    def set_preview(self, request_id: int, preview: dict[str, object]) -> None:
        """Store a fresh preview and bump the card, so every replica shows it."""
        with self.engine.begin() as conn:
            conn.execute(
                update(kill_requests)
                .where(kill_requests.c.id == request_id)
                .values(
                    preview=json.dumps(preview, ensure_ascii=False),
                    card_rev=kill_requests.c.card_rev + 1,
                    card_behind=True,
                )
            )

    def adopt_message_ts(self, request_id: int, ts: str) -> None:
        """Record the card's ts only if none is known yet (one conditional UPDATE)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(kill_requests)
                .where(kill_requests.c.id == request_id, kill_requests.c.message_ts.is_(None))
                .values(message_ts=ts)
            )

    def add_approval(self, request_id: int, user_id: str) -> bool:
        """Record one person's approval; False when they had already approved."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(approvals).values(
                        request_id=request_id, user_id=user_id, at=self._clock()
                    )
                )
                conn.execute(
                    update(kill_requests)
                    .where(kill_requests.c.id == request_id)
                    .values(card_rev=kill_requests.c.card_rev + 1, card_behind=True)
                )
        except IntegrityError:
            return False
        return True

    def active_on(
        self, instance_id: str, product: str, exclude_id: int | None = None
    ) -> KillRequest | None:
        """The request whose kill task may be alive on this instance, if any."""
        query = select(kill_requests).where(
            kill_requests.c.instance_id == instance_id,
            kill_requests.c.product == product,
            kill_requests.c.state.in_([s.value for s in ACTIVE_STATES]),
        )
        if exclude_id is not None:
            query = query.where(kill_requests.c.id != exclude_id)
        found = self._select(query.order_by(kill_requests.c.id.desc()).limit(1))
        return found[0] if found else None

    def open_in_channel(self, channel_id: str, limit: int = 50) -> list[KillRequest]:
        return self._select(
            select(kill_requests)
            .where(
                kill_requests.c.channel_id == channel_id,
                kill_requests.c.state.in_([s.value for s in OPEN_STATES]),
            )
            .order_by(kill_requests.c.id)
            .limit(limit)
        )

    def due_to_expire(self, now: float, limit: int = 100) -> list[KillRequest]:
        return self._select(
            select(kill_requests)
            .where(kill_requests.c.state == State.PENDING.value, kill_requests.c.expires_at <= now)
            .limit(limit)
        )

    def due_to_finish(self, now: float, limit: int = 100) -> list[KillRequest]:
        return self._select(
            select(kill_requests)
            .where(
                kill_requests.c.state == State.RUNNING.value,
                kill_requests.c.ends_at.is_not(None),
                kill_requests.c.ends_at <= now,
            )
            .limit(limit)
        )

    def cards_behind(self, limit: int = 50) -> list[KillRequest]:
        """Requests whose card has not yet shown their latest change."""
        return self._select(
            select(kill_requests)
            .where(
                kill_requests.c.card_behind == true(),
                kill_requests.c.message_ts.is_not(None),
            )
            .order_by(kill_requests.c.id)
            .limit(limit)
        )

    def unposted_cards(self, claimed_before: float, limit: int = 20) -> list[KillRequest]:
        """Requests whose card never reached Slack, and nobody is trying right now."""
        return self._select(
            select(kill_requests)
            .where(
                kill_requests.c.message_ts.is_(None),
                kill_requests.c.state.in_([s.value for s in OPEN_STATES]),
                kill_requests.c.card_claimed_at < claimed_before,
            )
            .order_by(kill_requests.c.id)
            .limit(limit)
        )

    def claim_card_post(self, request_id: int, claimed_before: float) -> bool:
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    update(kill_requests)
                    .where(
                        kill_requests.c.id == request_id,
                        kill_requests.c.message_ts.is_(None),
                        kill_requests.c.card_claimed_at < claimed_before,
                    )
                    .values(card_claimed_at=self._clock())
                ).rowcount
                == 1
            )

    def mark_card_synced(self, request_id: int, rev: int) -> None:
        """Slack now shows revision `rev`: the last update to land wins there, even an older
        one that was slow; then the card is behind again and the tick sends the newest."""
        with self.engine.begin() as conn:
            conn.execute(
                update(kill_requests)
                .where(kill_requests.c.id == request_id)
                .values(card_synced_rev=rev, card_behind=kill_requests.c.card_rev > rev)
            )

    def count_requests(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(kill_requests)).scalar_one())

    # ------------------------------------------------------------ audit

    def audit(
        self,
        *,
        actor_id: str,
        action: str,
        outcome: str,
        request_id: int | None = None,
        channel_id: str | None = None,
        instance_id: str | None = None,
        cloud_request_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one line to the audit log; rows are never updated or deleted."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(audit_log).values(
                    at=self._clock(),
                    actor_id=actor_id,
                    action=action,
                    outcome=outcome,
                    request_id=request_id,
                    channel_id=channel_id,
                    instance_id=instance_id,
                    cloud_request_id=cloud_request_id,
                    detail=(detail or "")[:2000] or None,
                )
            )

    # ------------------------------------------------------------ helpers

    def _select(self, query) -> list[KillRequest]:  # type: ignore[no-untyped-def]
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
            approvers = self._approvers(conn, [row["id"] for row in rows])
        return [self._to_request(row, approvers) for row in rows]

    @staticmethod
    def _approvers(conn, ids: Iterable[int]) -> dict[int, list[str]]:  # type: ignore[no-untyped-def]
        ids = list(ids)
        found: dict[int, list[str]] = {}
        if not ids:
            return found
        query = (
            select(approvals.c.request_id, approvals.c.user_id)
            .where(approvals.c.request_id.in_(ids))
            .order_by(approvals.c.at)
        )
        for request_id, user_id in conn.execute(query):
            found.setdefault(request_id, []).append(user_id)
        return found

    @staticmethod
    def _to_request(row: RowMapping, approvers: dict[int, list[str]]) -> KillRequest:
        return KillRequest(
            id=row["id"],
            channel_id=row["channel_id"],
            requester_id=row["requester_id"],
            spec=KillTaskSpec.from_dict(json.loads(row["spec"])),
            state=State(row["state"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            break_glass=bool(row["break_glass"]),
            message_ts=row["message_ts"],
            approvers=tuple(approvers.get(row["id"], ())),
            decided_by=row["decided_by"],
            decided_at=row["decided_at"],
            started_at=row["started_at"],
            ends_at=row["ends_at"],
            cloud_request_id=row["cloud_request_id"],
            error_code=row["error_code"],
            error_message=row["error_message"],
            stopped_by=row["stopped_by"],
            stopped_at=row["stopped_at"],
            card_rev=row["card_rev"],
            preview=json.loads(row["preview"]) if row["preview"] else None,
        )


class SharedRateLimit:
    """At most `rate` DBbrain calls in any second across every replica sharing the database.

    Each acquire is one short transaction: lock the single rate_lock row, count the calls of the
    last second, and record this one if there is room. Clocks of replicas on different hosts
    should agree to well under a second (NTP), as they do for Slack's signatures anyway.
    """

    def __init__(  # type: ignore[no-untyped-def]
        self, engine: Engine, rate: int = 20, window: float = 1.0, clock=time.time, sleep=time.sleep
    ):
        self.engine = engine
        self.rate = rate
        self.window = window  # seconds; a little over 1 leaves room for network jitter
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> None:
        while True:
            wait = self._try()
            if wait <= 0:
                return
            self._sleep(wait)

    def _try(self) -> float:
        with self.engine.begin() as conn:
            locked = conn.execute(
                update(rate_lock).where(rate_lock.c.id == 1).values(n=rate_lock.c.n + 1)
            ).rowcount
            if not locked:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(rate_lock).values(id=1, n=0))
                except IntegrityError:
                    pass
                return 0.001  # the row exists now; go round and take the lock
            now = self._clock()
            recent = conn.execute(
                select(func.count(), func.min(cloud_calls.c.at)).where(
                    cloud_calls.c.at > now - self.window
                )
            ).one()
            if recent[0] < self.rate:
                conn.execute(insert(cloud_calls).values(at=now))
                if recent[0] == 0:  # now and then, forget calls nobody will count again
                    conn.execute(cloud_calls.delete().where(cloud_calls.c.at < now - 60))
                return 0.0
            return max(recent[1] + self.window - now, 0.001)
