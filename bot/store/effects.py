"""The effect of a running kill task: its samples, the card's summary of them, and the claim
that lets one replica sample each task per period.

The claim is one conditional UPDATE on `sampled_at`, so every replica may look for tasks due a
sample and only one reads DBbrain for each.
"""

from __future__ import annotations

import json

from sqlalchemy import insert, or_, select, update

from bot.outcomes import next_effect
from bot.requests import KillRequest, State
from bot.store.cards import CardRows
from bot.store.tables import effect_samples, kill_requests


class EffectRows(CardRows):
    def _due(self, cutoff: float):  # type: ignore[no-untyped-def]
        return or_(kill_requests.c.sampled_at.is_(None), kill_requests.c.sampled_at < cutoff)

    def due_samples(self, cutoff: float, limit: int = 20) -> list[KillRequest]:
        """Running tasks nobody has sampled since `cutoff`."""
        return self._select(
            select(kill_requests)
            .where(kill_requests.c.state == State.RUNNING.value, self._due(cutoff))
            .order_by(kill_requests.c.id)
            .limit(limit)
        )

    def claim_sample(self, request_id: int, cutoff: float, now: float) -> bool:
        """Take this period's sample of a running task; only one replica wins it."""
        with self._writing() as conn:
            won = conn.execute(
                update(kill_requests)
                .where(
                    kill_requests.c.id == request_id,
                    kill_requests.c.state == State.RUNNING.value,
                    self._due(cutoff),
                )
                .values(sampled_at=now)
            ).rowcount
        return won == 1

    def add_sample(
        self, request_id: int, at: float, matching: int, total: int, truncated: bool = False
    ) -> KillRequest | None:
        """Store one sample and the card's summary of all of them; the card is bumped."""
        with self._writing() as conn:
            conn.execute(
                insert(effect_samples).values(
                    request_id=request_id, at=at, matching=matching, total=total
                )
            )
            return self._change_effect(
                conn, request_id, lambda old: next_effect(old, at, matching, total, truncated)
            )

    def note_sample_failure(self, request_id: int, error: str) -> KillRequest | None:
        """A sample could not be read: the card says so, beside the last numbers it has."""
        with self._writing() as conn:
            return self._change_effect(conn, request_id, lambda old: {**old, "error": error[:300]})

    def _change_effect(self, conn, request_id: int, change) -> KillRequest | None:  # type: ignore[no-untyped-def]
        """Rewrite the card's effect summary in this transaction, and bump the card."""
        row = conn.execute(  # locked (PostgreSQL): another replica's change waits its turn
            select(kill_requests.c.effect).where(kill_requests.c.id == request_id).with_for_update()
        ).first()
        if row is None:
            return None
        effect = change(json.loads(row[0]) if row[0] else {})
        conn.execute(
            update(kill_requests)
            .where(kill_requests.c.id == request_id)
            .values(
                effect=json.dumps(effect), card_rev=kill_requests.c.card_rev + 1, card_behind=True
            )
        )
        return self._get(conn, request_id)

    def samples(self, request_id: int) -> list[tuple[float, int, int]]:
        """Every sample of a task, oldest first: (time, matching, total)."""
        query = (
            select(effect_samples.c.at, effect_samples.c.matching, effect_samples.c.total)
            .where(effect_samples.c.request_id == request_id)
            .order_by(effect_samples.c.at, effect_samples.c.id)
        )
        with self._errors(), self.engine.connect() as conn:
            return [(float(a), int(m), int(t)) for a, m, t in conn.execute(query)]
