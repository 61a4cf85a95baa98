"""Starting an approved request: CreateKillTask is sent once, and only once, per request.

An approved request is claimed by one conditional UPDATE (approved -> starting) before the
call; only the process that wins the claim sends it. A start cut off mid-call is never sent
again: the clock marks it "outcome unknown" (`give_up`).
"""

from __future__ import annotations

from collections.abc import Callable

from bot.audit import SYSTEM, AuditEntry, entry
from bot.cards import Cards
from bot.cloud import Cloud, CloudError
from bot.effect import Effects
from bot.outcomes import Announcement, Happening, Outcome
from bot.preview import Preview
from bot.reading import Reader
from bot.requests import KillRequest, State
from bot.store import Store


class Starter:
    def __init__(  # type: ignore[no-untyped-def]
        self, store: Store, cloud: Cloud, cards: Cards, reader: Reader,
        clock: Callable[[], float], owner: str, oneshot, fresh_for: Callable[[], float],
    ):  # fmt: skip
        self.store = store
        self.cloud = cloud
        self.cards = cards
        self.reader = reader
        self.clock = clock
        self.owner = owner  # this process, as recorded on the claim
        self.oneshot = oneshot  # bot.oneshot.OneShot: a one-shot kill's path after the claim
        # Seconds a stored preview still serves as the task's first sample (the effect's own
        # sample period): within it, nothing is read before the start.
        self.fresh_for = fresh_for

    def start(self, request: KillRequest, approved_by: str | None = None) -> Outcome:
        """Claim the request and, if this call won, create the task. The sessions are read
        again first only when the card's preview is older than one sample period (and a read
        slot is free): the kill waits for no Slack call and, mostly, for no read.
        `approved_by`: the requester hears of the approval, once the call is on its way."""
        actor = request.decided_by or request.requester_id
        if request.spec.once:
            self._tell_approved(request, approved_by)
            claimed = self._claim(request, actor, "kill_mysql_threads", request.spec.to_dict())
            return claimed if isinstance(claimed, Outcome) else self.oneshot.run(claimed, actor)
        request, preview = self._baseline(request)
        claimed = self._claim(request, actor, "create_kill_task", request.spec.cloud_params())
        if isinstance(claimed, Outcome):
            return claimed
        try:
            result = self.cloud.create_kill_task(claimed.spec)
        except CloudError as error:
            self._tell_approved(claimed, approved_by)
            return self._failed(claimed, actor, error)
        self._tell_approved(claimed, approved_by)  # after the call: it never waits on Slack
        started = self.clock()
        running = self.store.move(
            claimed.id, State.RUNNING, started_at=started,
            ends_at=None if claimed.spec.until_stopped else started + claimed.spec.duration,
            cloud_request_id=result.request_id, effect=Effects.start_effect(started, preview),
            sampled_at=started,  # the first sample is the baseline above
            audit=[
                *failed_tries(claimed, actor, result.tries),
                entry(claimed, actor, "create_kill_task", "running",
                      cloud_request_id=result.request_id, detail=f"attempts={result.attempts}"),
            ],
        )  # fmt: skip
        if running is None:  # the clock gave up on this start meanwhile: it says "unknown"
            return closed(self.store.get(claimed.id) or claimed)
        self.cards.sync(running)
        self.cards.notifier.announce(
            running,
            Announcement(
                Happening.STARTED, actor, preview=preview, cloud_request_id=result.request_id
            ),
        )
        return Outcome(True, f"Kill task for request #{running.id} is running.", running)

    def _claim(
        self, request: KillRequest, actor: str, action: str, detail: object
    ) -> KillRequest | Outcome:
        """The one conditional move (approved -> starting) that lets one process send it.
        The card says "starting" beside the call, not before it: the kill waits for no Slack."""
        sending = entry(request, actor, action, "sending", detail=str(detail))
        claimed = self.store.claim_start(request.id, self.owner, sending)
        if claimed is None:
            return closed(self.store.get(request.id) or request)
        self.cards.sync_soon(claimed)
        return claimed

    def _baseline(self, request: KillRequest) -> tuple[KillRequest, Preview | None]:
        """What the task's effect is measured from: the card's preview while it is fresh;
        otherwise the sessions read again, if a read slot is free right now (a start never
        waits behind a flood of previews). None when neither: the card keeps its preview."""
        stored = Preview.from_dict(request.preview) if request.preview else None
        if stored and not stored.error and self.clock() - stored.read_at < self.fresh_for():
            return request, stored
        try:
            preview = self.reader.sessions(request.spec, wait=False)
        except CloudError:
            return request, None
        return self.store.set_preview(request.id, preview.to_dict()) or request, preview

    def _tell_approved(self, request: KillRequest, approved_by: str | None) -> None:
        if approved_by:
            self.cards.notifier.direct(request, Announcement(Happening.APPROVED, approved_by))

    def _failed(self, request: KillRequest, actor: str, error: CloudError) -> Outcome:
        state = State.UNKNOWN if error.outcome_unknown else State.FAILED
        moved = self.store.move(
            request.id, state, error_code=error.code, error_message=error.explain(),
            cloud_request_id=error.request_id,
            audit=[
                *failed_tries(request, actor, error.tries),
                entry(request, actor, "create_kill_task", state.value,
                      cloud_request_id=error.request_id,
                      detail=f"{error.code}: {error.message} attempts={error.attempts}"),
            ],
        )  # fmt: skip
        request = moved or self.store.get(request.id) or request
        self._show_failure(request, actor, error)
        title = "Outcome unknown" if state is State.UNKNOWN else "Failed"
        return Outcome(False, f"{title}: {error.explain()}", request)

    def give_up(self, request: KillRequest) -> None:
        """A start whose process died mid-call: say so, and never send it again by itself."""
        action = "KillMySqlThreads" if request.spec.once else "CreateKillTask"
        error = CloudError(
            "Interrupted", f"the bot stopped while {action} was in flight",
            outcome_unknown=True, action=action,
        )  # fmt: skip
        audit_action = "kill_mysql_threads" if request.spec.once else "create_kill_task"
        moved = self.store.move(
            request.id, State.UNKNOWN, error_code=error.code, error_message=error.explain(),
            audit=[entry(request, SYSTEM, audit_action, "unknown", detail=error.message)],
        )  # fmt: skip
        if moved is not None:
            self._show_failure(moved, None, error)

    def _show_failure(self, request: KillRequest, actor: str | None, error: CloudError) -> None:
        self.cards.sync(request)
        self.cards.notifier.announce(
            request,
            Announcement(
                Happening.START_FAILED, actor, error=error.explain(),
                outcome_unknown=error.outcome_unknown,
            ),
        )  # fmt: skip


def closed(request: KillRequest) -> Outcome:
    return Outcome(
        False, f"Request #{request.id} is already {request.state.value}; nothing was changed.",
        request,
    )  # fmt: skip


def failed_tries(request: KillRequest, actor: str, tries: tuple) -> list[AuditEntry]:
    """Every try that did not succeed gets its own audit row, with DBbrain's RequestId."""
    return [
        entry(request, actor, "create_kill_task", f"try_{number}_failed",
              cloud_request_id=cloud_request_id, detail=code)
        for number, (code, cloud_request_id) in enumerate(tries, start=1)
        if code != "ok"
    ]  # fmt: skip
