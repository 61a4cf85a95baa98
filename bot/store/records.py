"""Requests, approvals, heartbeats and the audit log: every read and every conditional move.

Every move that decides an outcome is one conditional UPDATE (`... WHERE state IN (...)`), so
whichever process or thread runs it first wins and every other one sees rowcount 0. A move and
its audit entries are one transaction. SQLite is the default; PostgreSQL works the same for
several replicas.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from sqlalchemy import (
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from bot.audit import AuditEntry
from bot.killtask import ONCE, KillTaskSpec
from bot.requests import ACTIVE_STATES, OPEN_STATES, KillRequest, State, sources_of
from bot.store.effects import EffectRows
from bot.store.instances import InstanceRows
from bot.store.nudges import NudgeRows
from bot.store.tables import StoreError, approvals, bot_processes, kill_requests


class _Again(Exception):
    """This person had already approved: roll the approval's transaction back."""


class Store(EffectRows, InstanceRows, NudgeRows):
    """Requests, approvals, heartbeats and the audit log."""

    # ------------------------------------------------------------ processes

    def heartbeat(self, process_id: str) -> None:
        now = self._clock()
        with self._writing() as conn:
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
        account: str | None = None,
        region: str | None = None,
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
            "account": account,
            "region": region,
        }
        try:
            with self._writing() as conn:
                found = conn.execute(insert(kill_requests).values(**row).returning(kill_requests))
                inserted = found.mappings().one()
                self._write_audit(conn, audit(inserted["id"]))
        except IntegrityError:
            return None
        return self._to_request(inserted, {})

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
        with self._writing() as conn:
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
            with self._writing() as conn:
                row = (
                    conn.execute(
                        update(kill_requests)
                        .where(
                            kill_requests.c.id == request_id,
                            kill_requests.c.state == State.PENDING.value,
                        )
                        .values(card_rev=kill_requests.c.card_rev + 1, card_behind=True)
                        .returning(kill_requests)
                    )
                    .mappings()
                    .first()
                )
                if row is None:
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
                    moved = self._move(
                        conn, request_id, State.APPROVED, decided_by=user_id, decided_at=now,
                        owner=owner,
                    )  # fmt: skip
                    if moved is None:  # the UPDATE above holds the row: this cannot miss
                        raise StoreError("the request changed while its approval was written")
                    row, outcome = moved, "approved"
                # Both UPDATEs return the row, and the approvers are known: nothing is re-read.
                return outcome, self._to_request(row, {request_id: [*approvers, user_id]})
        except (_Again, IntegrityError):
            return "again", None

    def claim_start(self, request_id: int, owner: str, audit: AuditEntry) -> KillRequest | None:
        """Claim an approved request for sending CreateKillTask; only one process ever wins."""
        return self.move(request_id, State.STARTING, owner=owner, audit=[audit])

    def active_on(
        self, instance_id: str, product: str, exclude_id: int | None = None
    ) -> KillRequest | None:
        """The request whose kill task may be alive on this instance, if any."""
        query = select(kill_requests).where(
            kill_requests.c.instance_id == instance_id,
            kill_requests.c.product == product,
            kill_requests.c.state.in_([s.value for s in ACTIVE_STATES]),
            kill_requests.c.duration != ONCE,  # a one-shot kill leaves nothing running
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

    # ------------------------------------------------------------ audit

    def audit(self, item: AuditEntry) -> None:
        """Append one line to the audit log; rows are never updated or deleted."""
        with self._writing() as conn:
            self._write_audit(conn, item)
