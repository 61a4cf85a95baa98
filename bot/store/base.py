"""What every part of the store shares: the engine, error mapping, and reading requests back.

Errors from the database become StoreError here, at the seam; a duplicate (IntegrityError) is
an answer, not an outage, and passes through.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager

from sqlalchemy import (
    insert,
    or_,
    select,
)
from sqlalchemy.engine import Engine, RowMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.audit import AuditEntry
from bot.killtask import KillTaskSpec
from bot.requests import KillRequest, State
from bot.store.tables import (
    StoreError,
    approvals,
    audit_log,
    bot_processes,
    kill_requests,
    write_lock,
)


class StoreBase:
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

    # ------------------------------------------------------------ shared

    def _dead_owner(self, stale_before: float):  # type: ignore[no-untyped-def]
        """A condition: the row's owning process stopped beating (or there is none)."""
        alive = select(bot_processes.c.id).where(bot_processes.c.heartbeat_at >= stale_before)
        return or_(kill_requests.c.owner.is_(None), kill_requests.c.owner.not_in(alive))

    def get(self, request_id: int) -> KillRequest | None:
        with self._errors(), self.engine.connect() as conn:
            return self._get(conn, request_id)

    def _get(self, conn, request_id: int) -> KillRequest | None:  # type: ignore[no-untyped-def]
        query = select(kill_requests).where(kill_requests.c.id == request_id)
        row = conn.execute(query).mappings().first()
        return None if row is None else self._to_request(row, self._approvers(conn, [request_id]))

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

    @contextmanager
    def _writing(self):  # type: ignore[no-untyped-def]
        """A write transaction, database errors mapped, and SQLite's writers in line."""
        with self._errors(), write_lock(self.engine), self.engine.begin() as conn:
            yield conn

    @staticmethod
    def _errors():  # type: ignore[no-untyped-def]
        return database_errors()

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
            account=row["account"],
            region=row["region"],
            effect=json.loads(row["effect"]) if row["effect"] else None,
            kill_result=json.loads(row["kill_result"]) if row["kill_result"] else None,
        )


@contextmanager
def database_errors():  # type: ignore[no-untyped-def]
    """The database's own errors, as the project's StoreError (the seam maps them)."""
    try:
        yield
    except IntegrityError:
        raise  # an answer (a duplicate), not an outage: callers handle it
    except SQLAlchemyError as exc:
        cause = type(getattr(exc, "orig", None) or exc).__name__
        raise StoreError(f"the database did not answer ({cause})") from exc
