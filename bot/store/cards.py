"""Card bookkeeping: where each request's card is, which revision Slack shows, who posts it.

A card is rendered from its row: card_rev counts changes, card_synced_rev is the last one Slack
accepted, and card_claimed_at says when a process last took on posting it.
"""

from __future__ import annotations

import json

from sqlalchemy import (
    and_,
    or_,
    select,
    true,
    update,
)

from bot.requests import OPEN_STATES, KillRequest
from bot.store.base import StoreBase
from bot.store.tables import kill_requests


class CardRows(StoreBase):
    def set_message_ts(self, request_id: int, ts: str, rev: int) -> None:
        """Slack took the card (revision `rev`) at `ts`."""
        with self._writing() as conn:
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
        with self._writing() as conn:
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
        with self._writing() as conn:
            conn.execute(
                update(kill_requests)
                .where(kill_requests.c.id == request_id, kill_requests.c.message_ts.is_(None))
                .values(message_ts=ts)
            )
            return self._get(conn, request_id)

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
            and_(self._dead_owner(stale_before), kill_requests.c.card_claimed_at < stale_before),
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
        with self._writing() as conn:
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
        with self._writing() as conn:
            conn.execute(
                update(kill_requests)
                .where(kill_requests.c.id == request_id)
                .values(card_synced_rev=rev, card_behind=kill_requests.c.card_rev > rev)
            )
