"""The store: the only module that imports SQLAlchemy. It owns the tables.

Every move that decides an outcome is one conditional UPDATE (`... WHERE state IN (...)`), so
whichever process or thread runs it first wins and every other one sees rowcount 0. SQLite is
the default; PostgreSQL works the same for several replicas.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager

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
    and_,
    case,
    create_engine,
    event,
    false,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Engine, RowMapping, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.audit import AuditEntry
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


class _Again(Exception):
    """This person had already approved: roll the approval's transaction back."""


class StoreError(Exception):
    """The database could not be used just now (down, locked, timed out)."""


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


class Store:
    def __init__(  # type: ignore[no-untyped-def]
        self,
        engine: Engine,
        clock=time.time,
        on_audit: Callable[[AuditEntry], None] | None = None,
    ):
        self.engine = engine
        self._clock = clock
        # Called for every entry written (the metrics count requests by outcome).
        self.on_audit = on_audit

    def create_schema(self) -> None:
        """Bring the schema to the newest migration (Alembic), creating it if needed."""
        from bot.migrate import upgrade

        upgrade(self.engine)

    def ping(self) -> None:
        """One round trip to the database; raises StoreError when it does not answer."""
        with self._errors(), self.engine.connect() as conn:
            conn.execute(select(1))

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

    def _dead_owner(self, stale_before: float):  # type: ignore[no-untyped-def]
        """A condition: the row's owning process stopped beating (or there is none)."""
        alive = select(bot_processes.c.id).where(bot_processes.c.heartbeat_at >= stale_before)
        return or_(kill_requests.c.owner.is_(None), kill_requests.c.owner.not_in(alive))

    def lost_starts(self, stale_before: float, started_before: float) -> list[KillRequest]:
        """Starts whose owner stopped beating, or that have been starting for far too long."""
        return self._select(
            select(kill_requests).where(
                kill_requests.c.state == State.STARTING.value,
                or_(self._dead_owner(stale_before), kill_requests.c.decided_at < started_before),
            )
        )

    def orphaned_approvals(self, stale_before: float, decided_before: float) -> list[KillRequest]:
        """Approved requests nobody has claimed: their process died, or is far too slow."""
        return self._select(
            select(kill_requests).where(
                kill_requests.c.state == State.APPROVED.value,
                or_(self._dead_owner(stale_before), kill_requests.c.decided_at < decided_before),
            )
        )

    def missing_previews(self, stale_before: float, limit: int = 20) -> list[KillRequest]:
        """Pending requests whose first preview was never stored, and whose filer is gone."""
        return self._select(
            select(kill_requests)
            .where(
                kill_requests.c.state == State.PENDING.value,
                kill_requests.c.preview.is_(None),
                self._dead_owner(stale_before),
            )
            .limit(limit)
        )

    # ------------------------------------------------------------ requests

    def insert_request(
        self,
        *,
        channel_id: str,
        requester_id: str,
        spec: KillTaskSpec,
        expires_at: float,
        owner: str,
        audit: Callable[[int], AuditEntry],
        break_glass: bool = False,
        source_key: str | None = None,
    ) -> KillRequest | None:
        """File a request and its audit entry together; None when this Slack delivery was
        already filed. A break-glass request is filed approved: nobody else decides on it."""
        now = self._clock()
        row = {
            "source_key": source_key,
            "channel_id": channel_id,
            "requester_id": requester_id,
            "instance_id": spec.instance_id,
            "product": spec.product,
            "duration": spec.duration,
            "spec": json.dumps(spec.to_dict(), ensure_ascii=False),
            "break_glass": break_glass,
            "state": (State.APPROVED if break_glass else State.PENDING).value,
            "created_at": now,
            "expires_at": expires_at,
            "decided_by": requester_id if break_glass else None,
            "decided_at": now if break_glass else None,
            "owner": owner,
            "card_rev": 1,
            "card_synced_rev": 0,
            "card_behind": True,
            "card_claimed_at": now,
        }
        try:
            with self._errors(), self.engine.begin() as conn:
                found = conn.execute(insert(kill_requests).values(**row).returning(kill_requests))
                inserted = found.mappings().one()
                self._write_audit(conn, audit(inserted["id"]))
        except IntegrityError:
            return None
        return self._to_request(inserted, {})

    def get(self, request_id: int) -> KillRequest | None:
        with self._errors(), self.engine.connect() as conn:
            return self._get(conn, request_id)

    def _get(self, conn, request_id: int) -> KillRequest | None:  # type: ignore[no-untyped-def]
        query = select(kill_requests).where(kill_requests.c.id == request_id)
        row = conn.execute(query).mappings().first()
        return None if row is None else self._to_request(row, self._approvers(conn, [request_id]))

    def move(
        self,
        request_id: int,
        to: State,
        *,
        audit: Iterable[AuditEntry] = (),
        **fields: object,
    ) -> KillRequest | None:
        """Apply one move of the state machine, with its audit entries, in one transaction.
        The moved row, or None when another click or replica won."""
        with self._errors(), self.engine.begin() as conn:
            moved = self._move(conn, request_id, to, **fields)
            if moved is None:
                return None
            for item in audit:
                self._write_audit(conn, item)
            return self._to_request(moved, self._approvers(conn, [request_id]))

    @staticmethod
    def _move(conn, request_id: int, to: State, **fields: object) -> RowMapping | None:  # type: ignore[no-untyped-def]
        return (
            conn.execute(
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
                .returning(kill_requests)
            )
            .mappings()
            .first()
        )

    def approve(
        self, request_id: int, user_id: str, required: int, owner: str, audit: AuditEntry
    ) -> tuple[str, KillRequest | None]:
        """Record one approval and, when it is the last one needed, move the request to
        approved: one transaction, so the approval and the decision stand or fall together.

        Returns ("recorded" | "approved" | "again" | "closed", the request as it now is). The
        first UPDATE locks the row, so concurrent approvals of one request take turns and each
        counts every approval committed before it."""
        now = self._clock()
        try:
            with self._errors(), self.engine.begin() as conn:
                bumped = conn.execute(
                    update(kill_requests)
                    .where(
                        kill_requests.c.id == request_id,
                        kill_requests.c.state == State.PENDING.value,
                    )
                    .values(card_rev=kill_requests.c.card_rev + 1, card_behind=True)
                ).rowcount
                if not bumped:
                    return "closed", self._get(conn, request_id)
                approvers = self._approvers(conn, [request_id]).get(request_id, [])
                if user_id in approvers:
                    raise _Again  # roll back: nothing changed
                conn.execute(
                    insert(approvals).values(request_id=request_id, user_id=user_id, at=now)
                )
                self._write_audit(conn, audit)
                outcome = "recorded"
                if len(approvers) + 1 >= required:
                    self._move(
                        conn, request_id, State.APPROVED, decided_by=user_id, decided_at=now,
                        owner=owner,
                    )  # fmt: skip
                    outcome = "approved"
                return outcome, self._get(conn, request_id)
        except (_Again, IntegrityError):
            return "again", None

    def claim_start(self, request_id: int, owner: str, audit: AuditEntry) -> KillRequest | None:
        """Claim an approved request for sending CreateKillTask; only one process ever wins."""
        return self.move(request_id, State.STARTING, owner=owner, audit=[audit])

    def set_message_ts(self, request_id: int, ts: str, rev: int) -> None:
        """Slack took the card (revision `rev`) at `ts`."""
        with self._errors(), self.engine.begin() as conn:
            conn.execute(
                update(kill_requests)
                .where(kill_requests.c.id == request_id)
                .values(
                    message_ts=ts,
                    card_synced_rev=rev,
                    card_behind=kill_requests.c.card_rev > rev,
                )
            )

    def set_preview(self, request_id: int, preview: dict[str, object]) -> KillRequest | None:
        """Store a fresh preview and bump the card, so every replica shows it."""
        with self._errors(), self.engine.begin() as conn:
            conn.execute(
                update(kill_requests)
                .where(kill_requests.c.id == request_id)
                .values(
                    preview=json.dumps(preview, ensure_ascii=False),
                    card_rev=kill_requests.c.card_rev + 1,
                    card_behind=True,
                )
            )
            return self._get(conn, request_id)

    def adopt_message_ts(self, request_id: int, ts: str) -> KillRequest | None:
        """Record the card's ts only if none is known yet (one conditional UPDATE)."""
        with self._errors(), self.engine.begin() as conn:
            conn.execute(
                update(kill_requests)
                .where(kill_requests.c.id == request_id, kill_requests.c.message_ts.is_(None))
                .values(message_ts=ts)
            )
            return self._get(conn, request_id)

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

    def count_by_state(self, states: Iterable[State]) -> dict[State, int]:
        query = (
            select(kill_requests.c.state, func.count())
            .where(kill_requests.c.state.in_([s.value for s in states]))
            .group_by(kill_requests.c.state)
        )
        with self._errors(), self.engine.connect() as conn:
            found = {State(state): int(n) for state, n in conn.execute(query)}
        return {state: found.get(state, 0) for state in states}

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

    def _card_unclaimed(self, claimed_before: float, stale_before: float):  # type: ignore[no-untyped-def]
        """Nobody is posting this card: the last try is old, or its process died."""
        return or_(
            kill_requests.c.card_claimed_at < claimed_before,
            and_(
                self._dead_owner(stale_before), kill_requests.c.card_claimed_at < stale_before
            ),
        )

    def unposted_cards(
        self, claimed_before: float, stale_before: float, limit: int = 20
    ) -> list[KillRequest]:
        """Requests whose card never reached Slack (as far as the bot knows), unclaimed."""
        return self._select(
            select(kill_requests)
            .where(
                kill_requests.c.message_ts.is_(None),
                kill_requests.c.state.in_([s.value for s in OPEN_STATES]),
                self._card_unclaimed(claimed_before, stale_before),
            )
            .order_by(kill_requests.c.id)
            .limit(limit)
        )

    def claim_card_post(self, request_id: int, claimed_before: float, stale_before: float) -> bool:
        with self._errors(), self.engine.begin() as conn:
            return (
                conn.execute(
                    update(kill_requests)
                    .where(
                        kill_requests.c.id == request_id,
                        kill_requests.c.message_ts.is_(None),
                        self._card_unclaimed(claimed_before, stale_before),
                    )
                    .values(card_claimed_at=self._clock())
                ).rowcount
                == 1
            )

    def mark_card_synced(self, request_id: int, rev: int) -> None:
        """Slack now shows revision `rev`: the last update to land wins there, even an older
        one that was slow; then the card is behind again and the tick sends the newest."""
        with self._errors(), self.engine.begin() as conn:
            conn.execute(
                update(kill_requests)
                .where(kill_requests.c.id == request_id)
                .values(card_synced_rev=rev, card_behind=kill_requests.c.card_rev > rev)
            )

    def count_requests(self) -> int:
        with self._errors(), self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(kill_requests)).scalar_one())

    # ------------------------------------------------------------ audit

    def audit(self, item: AuditEntry) -> None:
        """Append one line to the audit log; rows are never updated or deleted."""
        with self._errors(), self.engine.begin() as conn:
            self._write_audit(conn, item)

    def _write_audit(self, conn, item: AuditEntry) -> None:  # type: ignore[no-untyped-def]
        conn.execute(
            insert(audit_log).values(
                at=self._clock(),
                actor_id=item.actor_id,
                action=item.action,
                outcome=item.outcome,
                request_id=item.request_id,
                channel_id=item.channel_id,
                instance_id=item.instance_id,
                cloud_request_id=item.cloud_request_id,
                detail=(item.detail or "")[:2000] or None,
            )
        )
        if self.on_audit is not None:
            self.on_audit(item)

    # ------------------------------------------------------------ helpers

    @staticmethod
    @contextmanager
    def _errors():  # type: ignore[no-untyped-def]
        """The database's own errors, as the project's StoreError (the seam maps them)."""
        try:
            yield
        except IntegrityError:
            raise  # an answer (a duplicate), not an outage: callers handle it
        except SQLAlchemyError as exc:
            cause = type(getattr(exc, "orig", None) or exc).__name__
            raise StoreError(f"the database did not answer ({cause})") from exc

    def _select(self, query) -> list[KillRequest]:  # type: ignore[no-untyped-def]
        with self._errors(), self.engine.connect() as conn:
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
    """At most `rate` DBbrain calls in any second across every replica sharing the database,
    of which reads may take at most `read_rate`, so stops and starts always find a slot.

    Each acquire is one short transaction: lock the single rate_lock row, count the calls (and
    the reads among them) of the last second, and record this one if there is room. Clocks of
    replicas on different hosts should agree to well under a second (NTP), as they do for
    Slack's signatures anyway.
    """

    def __init__(  # type: ignore[no-untyped-def]
        self,
        engine: Engine,
        rate: int = 20,
        window: float = 1.0,
        clock=time.time,
        sleep=time.sleep,
        read_rate: int = 14,  # so 6 of every 20 slots are kept for stops and starts
    ):
        if not 0 < read_rate <= rate:
            raise ValueError("read_rate must be from 1 to rate")
        self.engine = engine
        self.rate = rate
        self.read_rate = read_rate
        self.window = window  # seconds; a little over 1 leaves room for network jitter
        self._clock = clock
        self._sleep = sleep

    def acquire(self, urgent: bool = False) -> None:
        """Wait for a slot; a read waits, never fails, while reads hold their share."""
        while True:
            wait = self._try(urgent)
            if wait <= 0:
                return
            self._sleep(wait)

    def _try(self, urgent: bool) -> float:
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
            is_read = cloud_calls.c.urgent == false()
            calls, oldest, reads, oldest_read = conn.execute(
                select(
                    func.count(),
                    func.min(cloud_calls.c.at),
                    func.count(case((is_read, 1))),
                    func.min(case((is_read, cloud_calls.c.at))),
                ).where(cloud_calls.c.at > now - self.window)
            ).one()
            # The oldest call that must leave the window before this one may go.
            blockers = []
            if calls >= self.rate:
                blockers.append(oldest)
            if not urgent and reads >= self.read_rate:
                blockers.append(oldest_read)
            if not blockers:
                conn.execute(insert(cloud_calls).values(at=now, urgent=urgent))
                if calls == 0:  # now and then, forget calls nobody will count again
                    conn.execute(cloud_calls.delete().where(cloud_calls.c.at < now - 60))
                return 0.0
            return max(max(blockers) + self.window - now, 0.001)
