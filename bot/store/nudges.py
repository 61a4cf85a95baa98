"""Reminders, escalations and "still running" nudges; the lists App Home shows; the audit
export. Each nudge is claimed by one conditional UPDATE with its audit entry, so across
replicas it goes out once per step.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import func, or_, select, update

from bot.audit import AuditEntry
from bot.requests import OPEN_STATES, KillRequest, State
from bot.store.cards import CardRows
from bot.store.tables import audit_log, kill_requests

NUDGES = ("reminded_at", "escalated_at", "running_reminded_at")
ENDED = [s.value for s in State if s not in OPEN_STATES]


class NudgeRows(CardRows):
    @staticmethod
    def _nudge_due(kind: str, cutoff: float, longer_than: float):  # type: ignore[no-untyped-def]
        """The condition under which nudge `kind` is due: the WHERE of both read and claim.
        A running task is nudged when it runs until stopped or longer than `longer_than`."""
        c = kill_requests.c
        if kind == "running_reminded_at":
            return (
                c.state == State.RUNNING.value,
                or_(c.ends_at.is_(None), c.ends_at - c.started_at > longer_than),
                func.coalesce(c.running_reminded_at, c.started_at) <= cutoff,
            )
        # Only once the card is in the channel: a reminder belongs in its thread.
        return (
            c.state == State.PENDING.value,
            c[kind].is_(None),
            c.created_at <= cutoff,
            c.message_ts.is_not(None),
        )

    def due_nudges(
        self, kind: str, cutoff: float, longer_than: float = 0, limit: int = 50
    ) -> list[KillRequest]:
        """Requests due for nudge `kind` (one of NUDGES), measured against `cutoff`."""
        assert kind in NUDGES
        query = select(kill_requests).where(*self._nudge_due(kind, cutoff, longer_than))
        return self._select(query.order_by(kill_requests.c.id).limit(limit))

    def claim_nudge(
        self, request_id: int, kind: str, cutoff: float, audit: AuditEntry, longer_than: float = 0
    ) -> bool:
        """Take on sending nudge `kind` for this request; True for exactly one caller."""
        assert kind in NUDGES
        with self._writing() as conn:
            claimed = conn.execute(
                update(kill_requests)
                .where(
                    kill_requests.c.id == request_id, *self._nudge_due(kind, cutoff, longer_than)
                )
                .values({kind: self._clock()})
            ).rowcount
            if claimed == 1:
                self._write_audit(conn, audit)
            return claimed == 1

    def release_nudge(self, request_id: int, kind: str, audit: AuditEntry) -> None:
        """A claimed nudge that did not reach Slack: due again, so the next tick retries."""
        assert kind in NUDGES
        with self._writing() as conn:
            conn.execute(
                update(kill_requests).where(kill_requests.c.id == request_id).values({kind: None})
            )
            self._write_audit(conn, audit)

    # ------------------------------------------------------------ App Home

    def in_states(self, states: list[State], limit: int = 50) -> list[KillRequest]:
        return self._select(
            select(kill_requests)
            .where(kill_requests.c.state.in_([s.value for s in states]))
            .order_by(kill_requests.c.id.desc())
            .limit(limit)
        )

    def recently_ended(self, limit: int = 20) -> list[KillRequest]:
        return self._select(
            select(kill_requests)
            .where(kill_requests.c.state.in_(ENDED))
            .order_by(kill_requests.c.id.desc())
            .limit(limit)
        )

    # ------------------------------------------------------------ audit export

    def audit_rows(
        self, since: float | None = None, until: float | None = None,
        instance_id: str | None = None, batch: int = 500,
    ) -> Iterator[dict]:  # fmt: skip
        """The audit log in order, read in batches by id: memory stays flat however long
        the log, on SQLite and PostgreSQL alike, and no transaction is held open."""
        query = select(audit_log).order_by(audit_log.c.id).limit(batch)
        if since is not None:
            query = query.where(audit_log.c.at >= since)
        if until is not None:
            query = query.where(audit_log.c.at < until)
        if instance_id is not None:
            query = query.where(audit_log.c.instance_id == instance_id)
        after = 0
        while True:
            with self._errors(), self.engine.connect() as conn:
                rows = [
                    dict(r) for r in conn.execute(query.where(audit_log.c.id > after)).mappings()
                ]
            yield from rows
            if len(rows) < batch:
                return
            after = rows[-1]["id"]
