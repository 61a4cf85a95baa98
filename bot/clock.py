"""The clock: what no click triggers. Expiry, finish, lost starts, and finishing what a dead
process left after an ack (a card never posted, a preview never read, an approval never started).

Every replica runs it. Each step that changes a request is a conditional move or a claim in the
store, so running it everywhere at once still does it once; reading a missing preview again or
re-rendering a card that is behind may happen twice, which costs a call and changes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bot.audit import SYSTEM, entry
from bot.outcomes import Announcement, Happening
from bot.requests import OPEN_STATES, KillRequest, State, approvals_missing
from bot.service import KillTaskService

log = logging.getLogger(__name__)


class Clock:
    def __init__(
        self,
        service: KillTaskService,
        *,
        heartbeat_grace: float = 15.0,
        starting_timeout: float = 120.0,
        card_claim_timeout: float = 30.0,
        on_counts: Callable[[dict[State, int]], None] | None = None,
    ):
        self.service = service
        self.store = service.store
        self.heartbeat_grace = heartbeat_grace  # a process silent this long is dead
        # Longest a start can honestly take (every try timing out, and the backoff between).
        self.starting_timeout = starting_timeout
        # Longer than one card post can take (Slack's timeout plus retries): then another try.
        self.card_claim_timeout = card_claim_timeout
        self.on_counts = on_counts

    def beat(self) -> None:
        """Tell the other replicas this process is alive (its claims still stand)."""
        self.store.heartbeat(self.service.process_id)

    def tick(self) -> None:
        now = self.service.clock()
        for step in (
            self._expire,
            self._finish,
            self._sample,
            self._give_up_lost_starts,
            self._start_orphaned_approvals,
            self._read_missing_previews,
            self._catch_up_cards,
            self._post_missing_cards,
            self._remind_and_escalate,
            self._remind_running,
            self._count,
            self._refresh_instances,
        ):
            try:
                step(now)
            except Exception:  # one step failing must not stop the others
                log.exception("clock_step_failed step=%s", step.__name__.strip("_"))

    def _refresh_instances(self, now: float) -> None:
        if self.service.estate is not None:
            self.service.estate.refresh_soon()  # reads DBbrain only when the list is old

    def _expire(self, now: float) -> None:
        for request in self.store.due_to_expire(now):
            self._end(request, State.EXPIRED, "expire", "expired", Happening.EXPIRED)

    def _finish(self, now: float) -> None:
        for request in self.store.due_to_finish(now):
            moved = self._end(request, State.FINISHED, "finish", "finished", Happening.FINISHED)
            if moved is not None:
                self.service.effects.finish(moved, Happening.FINISHED)

    def _end(
        self, request: KillRequest, to: State, action: str, outcome: str, what: Happening
    ) -> KillRequest | None:
        """A move nobody clicked; the replica that wins it shows it on the card and thread."""
        moved = self.store.move(request.id, to, audit=[entry(request, SYSTEM, action, outcome)])
        if moved is not None:
            self.service.cards.sync(moved)
            self.service.notifier.announce(moved, Announcement(what))
        return moved

    def _sample(self, now: float) -> None:
        """A running task's effect, read by one replica per task and period."""
        self.service.effects.sample_due(now)

    def _give_up_lost_starts(self, now: float) -> None:
        for request in self.store.lost_starts(
            stale_before=now - self.heartbeat_grace,
            started_before=now - self.starting_timeout,
        ):
            self.service.starter.give_up(request)

    def _start_orphaned_approvals(self, now: float) -> None:
        """Approved, but the process that recorded the approval died before claiming it."""
        for request in self.store.orphaned_approvals(
            stale_before=now - self.heartbeat_grace,
            decided_before=now - self.starting_timeout,
        ):
            log.info("starting_orphaned_approval request=%s", request.id)
            self.service.starter.start(request)

    def _read_missing_previews(self, now: float) -> None:
        for request in self.store.missing_previews(stale_before=now - self.heartbeat_grace):
            self.service.cards.refresh_preview(request)

    def _catch_up_cards(self, _now: float) -> None:
        for request in self.store.cards_behind():
            self.service.cards.sync(request)

    def _post_missing_cards(self, now: float) -> None:
        claimed_before, stale_before = now - self.card_claim_timeout, now - self.heartbeat_grace
        for request in self.store.unposted_cards(claimed_before, stale_before):
            if self.store.claim_card_post(request.id, claimed_before, stale_before):
                posted = self.service.cards.post_missing(request)
                if posted is not None:  # a card found in the channel had its mention already
                    self.service.announce_filed(posted)

    def _remind_and_escalate(self, now: float) -> None:
        """One reminder, then one escalation, per pending request: each claimed by one
        conditional UPDATE, so across replicas each goes out once."""
        approval = self.service.policy.approval
        for kind, minutes, what, mentions in (
            ("reminded_at", approval.remind_after_minutes, Happening.REMINDER, approval.notify),
            ("escalated_at", approval.escalate_after_minutes, Happening.ESCALATION,
             approval.escalate_to),
        ):  # fmt: skip
            if minutes is None:
                continue
            cutoff = now - minutes * 60
            for request in self.store.due_nudges(kind, cutoff):
                sent = entry(request, SYSTEM, what.value, "sent", detail=" ".join(mentions))
                if not self.store.claim_nudge(request.id, kind, cutoff, sent):
                    continue
                needed = self.service.policy.requirement(request.spec)
                news = Announcement(
                    what, mentions=mentions, missing=approvals_missing(request, needed.required),
                    needed_from=needed.from_,
                )  # fmt: skip
                self._nudge(request, kind, news)

    def _remind_running(self, now: float) -> None:
        """ "Still killing on …": a task running until stopped (or long), every so often."""
        minutes = self.service.policy.remind_running_minutes
        if minutes is None:
            return
        every = minutes * 60
        kind = "running_reminded_at"
        for request in self.store.due_nudges(kind, now - every, longer_than=every):
            sent = entry(request, SYSTEM, Happening.STILL_RUNNING.value, "sent")
            if self.store.claim_nudge(request.id, kind, now - every, sent, longer_than=every):
                approvers = request.approvers or tuple(filter(None, [request.decided_by]))
                news = Announcement(Happening.STILL_RUNNING, mentions=approvers)
                self._nudge(request, kind, news)

    def _nudge(self, request: KillRequest, kind: str, news: Announcement) -> None:
        """Post a claimed nudge; one Slack did not take is due again on the next tick, and
        the audit log says it failed."""
        if self.service.notifier.announce(request, news):
            return
        why = "Slack did not take the thread reply; the next tick tries again"
        self.store.release_nudge(
            request.id, kind, entry(request, SYSTEM, news.what.value, "failed", detail=why)
        )

    def _count(self, _now: float) -> None:
        if self.on_counts is not None:
            self.on_counts(self.store.count_by_state(OPEN_STATES))


class Ticker:
    """Runs the clock every few seconds, with the heartbeat on a thread of its own: a slow
    step (a start the clock took over) must not make this process look dead to the others."""

    def __init__(self, clock: Clock, every: float):
        self.clock = clock
        self.every = every
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(clock.beat,), name="heartbeat", daemon=True),
            threading.Thread(target=self._loop, args=(clock.tick,), name="clock", daemon=True),
        ]

    def start(self) -> None:
        self.clock.beat()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=10)

    def _loop(self, work: Callable[[], None]) -> None:
        while not self._stop.wait(self.every):
            try:
                work()
            except Exception:
                log.exception("clock_failed work=%s", getattr(work, "__name__", "?"))
