"""The effect of a running kill task: samples while it runs, and a summary when it ends.

DBbrain reports no kill count for a kill task, so the bot reads the matching sessions itself:
at the start (the card's preview, read again first when older than a sample period), every
`effect.sample_seconds` while it runs (one replica per task, by a claim in the store), and once
more when it ends. The reads are Describe* calls, held by the rate limiter to the reads'
share, so they never delay a start or a stop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from bot.cards import Cards
from bot.outcomes import EffectSummary, Happening, next_effect
from bot.policy import Policy
from bot.preview import Preview
from bot.reading import Reader
from bot.requests import KillRequest
from bot.store import Store

log = logging.getLogger(__name__)

Samples = list[tuple[float, int, int]]  # (time, matching, total)


class Effects:
    def __init__(  # type: ignore[no-untyped-def]
        self, store: Store, reader: Reader, cards: Cards, policy: Callable[[], Policy], clock,
    ):  # fmt: skip
        self.store, self.reader, self.cards = store, reader, cards
        self.policy, self.clock = policy, clock

    @staticmethod
    def start_effect(started: float, preview: Preview | None) -> str | None:
        """The first sample, stored with the move to running: what the approvers saw just
        before the start."""
        if preview is None or preview.error:
            return None
        effect = next_effect({}, started, preview.matched, preview.read, preview.truncated)
        return json.dumps(effect)

    def sample_due(self, now: float) -> None:
        """Sample every running task whose period has passed, if this replica wins it."""
        cutoff = now - self.policy().sample_seconds
        for request in self.store.due_samples(cutoff):
            if self.store.claim_sample(request.id, cutoff, now):
                self._sample(request)

    def _sample(self, request: KillRequest) -> KillRequest | None:
        preview = self.reader.sessions(request.spec)
        if preview.error:
            log.warning("effect_sample_failed request=%s", request.id)
            # The next period tries again; meanwhile the card says why its numbers are old.
            failed = self.store.note_sample_failure(request.id, preview.error)
            if failed is not None:
                self.cards.sync(failed)
            return None
        moved = self.store.add_sample(
            request.id, preview.read_at, preview.matched, preview.read, preview.truncated
        )
        if moved is not None:
            self.cards.sync(moved)
        return moved

    def finish(self, request: KillRequest, how: Happening) -> None:
        """The task ended (finished or stopped): one last sample, then the thread's summary
        with its chart. Called once, by whoever won the move that ended it."""
        request = self._sample(request) or request
        samples = all_samples(request, self.store.samples(request.id))
        summary = summarize_effect(request, samples, how, self.clock())
        chart = None
        if len(samples) >= 2:
            try:
                chart = _draw(request, samples)
            except Exception:  # a chart that cannot be drawn must not lose the summary
                log.exception("effect_chart_failed request=%s", request.id)
        self.cards.notifier.post_summary(request, summary, chart)


def all_samples(request: KillRequest, stored: Samples) -> Samples:
    """The stored samples, after the first one kept on the request itself."""
    effect = request.effect or {}
    if "start_at" not in effect:
        return stored
    first = (float(effect["start_at"]), int(effect["start"]), int(effect.get("start_total", 0)))
    return [first, *stored]


def summarize_effect(
    request: KillRequest, samples: Samples, how: Happening, now: float
) -> EffectSummary:
    ended = request.stopped_at or request.ends_at or now
    ran = None if request.started_at is None else max(0.0, min(ended, now) - request.started_at)
    counts = [matching for _, matching, _ in samples]
    effect = request.effect or {}
    approvers = request.approvers or ((request.decided_by,) if request.decided_by else ())
    return EffectSummary(
        how=how, ran_seconds=ran, approvers=approvers, samples=len(samples),
        start=counts[0] if counts else None, peak=max(counts) if counts else None,
        end=counts[-1] if counts else None, truncated=bool(effect.get("truncated")),
    )  # fmt: skip


def _draw(request: KillRequest, samples: Samples) -> bytes:
    from bot.chart import draw  # Pillow loads only when a chart is drawn

    return draw(samples, f"Request #{request.id} · {request.spec.instance_id}")
