"""Card sync: every request's card is rendered from its stored row, and caught up when Slack
missed a change. One place decides when a card is posted, looked for, or updated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from bot.outcomes import Announcement, CardPost, EffectSummary
from bot.preview import Preview
from bot.requests import KillRequest, State
from bot.store import Store


class Notifier(Protocol):
    """Shows requests to people; implemented by the Slack layer. Never raises."""

    def post_card(self, request: KillRequest) -> CardPost: ...

    def find_card(self, request: KillRequest) -> CardPost: ...

    def update_card(self, request: KillRequest) -> bool: ...

    def announce(self, request: KillRequest, announcement: Announcement) -> bool:
        """Say it in the card's thread (and to whoever else must hear it); True when the
        thread reply was posted."""
        ...

    def post_summary(
        self, request: KillRequest, summary: EffectSummary, chart: bytes | None
    ) -> None:
        """The end-of-task summary in the card's thread, with its chart when there is one;
        a failed upload is said in the summary."""
        ...

    def direct(self, request: KillRequest, announcement: Announcement) -> None:
        """Tell the requester, in a direct message with a link to the card."""


class Cards:
    def __init__(self, store: Store, notifier: Notifier, read_preview: Callable[..., Preview]):
        self.store = store
        self.notifier = notifier
        self.read_preview = read_preview
        # Runs a card update beside the caller (the app gives it the Slack lane); inline until
        # then. A job it drops leaves the card behind, for the clock to catch up.
        self.on_the_side: Callable[[Callable[[], None]], None] = lambda job: job()

    def post(self, request: KillRequest) -> tuple[KillRequest, CardPost]:
        card = self.notifier.post_card(request)
        if card.ts:
            self.store.set_message_ts(request.id, card.ts, request.card_rev)
            request = replace(request, message_ts=card.ts)
        return request, card

    def post_missing(self, request: KillRequest) -> KillRequest | None:
        """A card not known to be in Slack: find it, or post it now. An earlier try may have
        landed without an answer (a timeout, or a process killed mid-call), and Slack keeps
        no idempotency key for posts, so the channel is searched first (for the request
        number in the card's metadata). When it cannot be searched, nothing is posted.
        Returns the request when this call posted its card for the first time."""
        found = self.notifier.find_card(request)
        if found.unknown:
            return None  # the next tick looks again: never risk a second card
        posted = None
        if found.ts:
            request = self.store.adopt_message_ts(request.id, found.ts) or request
            self.sync(request)
        else:
            request, card = self.post(request)
            posted = request if card.ts else None
        if request.preview is None and request.state is State.PENDING:
            self.refresh_preview(request)  # the filer died before reading it, too
        return posted

    def sync(self, request: KillRequest) -> None:
        """Render the card from the stored row; remember the revision Slack accepted."""
        if request.message_ts is None:
            return
        if self.notifier.update_card(request):
            self.store.mark_card_synced(request.id, request.card_rev)

    def sync_soon(self, request: KillRequest) -> None:
        """`sync`, without waiting for Slack. If it lands after a newer update, the card is
        marked behind again and the clock sends the newest (see Store.mark_card_synced)."""
        self.on_the_side(lambda: self.sync(request))

    def refresh_preview(self, request: KillRequest) -> tuple[KillRequest, Preview]:
        preview = self.read_preview(request.spec)
        request = self.store.set_preview(request.id, preview.to_dict()) or request
        self.sync(request)
        return request, preview
