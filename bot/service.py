"""Use cases: file, approve, reject, stop, list, and the periodic tick (expiry, finish, cards).

The service speaks to the outside only through small ports: the store, the cloud gateway, a
notifier that shows cards and replies, and a membership lookup for user groups. It checks the
policy at the moment each action happens, for the person who acted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot.cloud import Cloud, CloudError
from bot.killtask import KillTaskSpec, broad_reason
from bot.policy import Decision, Policy, Target
from bot.preview import Preview, list_filters, summarize
from bot.requests import KillRequest, State, approval_problem, approvals_missing
from bot.store import Store

log = logging.getLogger(__name__)

SYSTEM = "system"  # the actor recorded for moves nobody clicked (expiry, finish)


class Notifier(Protocol):
    """Shows requests to people; implemented by the Slack layer."""

    def post_card(self, request: KillRequest) -> str | None: ...

    def update_card(self, request: KillRequest) -> bool: ...

    def thread_reply(self, request: KillRequest, text: str) -> None: ...


class Membership(Protocol):
    def groups_of(self, user_id: str, groups: frozenset[str]) -> frozenset[str]: ...


PREVIEW_LIMIT = 5000  # generous, so a storm of thousands still counts; a cut answer is flagged


@dataclass(frozen=True)
class Outcome:
    """What to tell the person who acted (ephemeral), and the request it concerns."""

    ok: bool
    message: str
    request: KillRequest | None = None
    field: str | None = None
    preview: Preview | None = None


class KillTaskService:
    def __init__(
        self,
        store: Store,
        cloud: Cloud,
        policy: Policy,
        notifier: Notifier,
        membership: Membership,
        clock: Callable[[], float] = time.time,
        starting_timeout: float = 120.0,
        process_id: str = "local",
        heartbeat_grace: float = 15.0,
        card_claim_timeout: float = 30.0,
    ):
        self.store = store
        self.cloud = cloud
        self.policy = policy
        self.notifier = notifier
        self.membership = membership
        self.clock = clock
        self.starting_timeout = starting_timeout
        self.process_id = process_id
        self.heartbeat_grace = heartbeat_grace
        # Longer than one post_card can take (Slack timeout plus retries): then another try.
        self.card_claim_timeout = card_claim_timeout

    # ------------------------------------------------------------ policy

    def _check(
        self, verb: str, user_id: str, channel_id: str, target: Target | None = None
    ) -> Decision:
        groups = self.membership.groups_of(user_id, self.policy.groups)
        return self.policy.check(verb, user_id, groups, channel_id, target)

    def _check_spec(self, verb: str, user_id: str, channel_id: str, spec: KillTaskSpec) -> Decision:
        """The verb itself, and `kill_all` too when the spec reaches (nearly) every session."""
        target = Target(spec.instance_id, spec.product, spec.duration)
        decision = self._check(verb, user_id, channel_id, target)
        broad = broad_reason(spec)
        if decision.allowed and broad:
            wide = self._check("kill_all", user_id, channel_id, target)
            if not wide.allowed:
                return Decision(
                    False,
                    f"this request needs `kill_all` because {broad} ({wide.reason}); "
                    "add a filter such as user=, db= or command=",
                    field="info" if "prefix" in broad else None,
                )
        return decision

    def _deny(
        self, user_id: str, action: str, decision: Decision, request: KillRequest | None = None,
        channel_id: str | None = None, instance_id: str | None = None,
    ) -> Outcome:  # fmt: skip
        self.store.audit(
            actor_id=user_id,
            action=action,
            outcome="denied",
            request_id=request.id if request else None,
            channel_id=channel_id or (request.channel_id if request else None),
            instance_id=instance_id or (request.spec.instance_id if request else None),
            detail=decision.reason,
        )
        return Outcome(False, f"Not allowed: {decision.reason}.", request, decision.field)

    def precheck(
        self, user_id: str, channel_id: str, spec: KillTaskSpec, break_glass: bool = False
    ) -> Decision:
        """Everything `file` would refuse for, without storing anything (for the modal)."""
        decision = self._check_spec("request", user_id, channel_id, spec)
        if decision.allowed and break_glass:
            decision = self._check_glass(user_id, channel_id, spec)
        return decision

    def _check_glass(self, user_id: str, channel_id: str, spec: KillTaskSpec) -> Decision:
        target = Target(spec.instance_id, spec.product, spec.duration)
        decision = self._check("break_glass", user_id, channel_id, target)
        if decision.allowed and not spec.reason:
            return Decision(
                False, "break-glass needs a reason= so the record says why", None, "reason"
            )
        return decision

    # ------------------------------------------------------------ file

    def file(
        self,
        user_id: str,
        channel_id: str,
        spec: KillTaskSpec,
        *,
        break_glass: bool = False,
        source_key: str | None = None,
    ) -> Outcome:
        decision = self.precheck(user_id, channel_id, spec, break_glass)
        if not decision.allowed:
            return self._deny(
                user_id, "request", decision, channel_id=channel_id, instance_id=spec.instance_id
            )
        busy = self.store.active_on(spec.instance_id, spec.product)
        if busy is not None:
            return Outcome(False, self._busy_message(busy), busy, "instance_id")
        now = self.clock()
        request = self.store.insert_request(
            channel_id=channel_id,
            requester_id=user_id,
            spec=spec,
            expires_at=now + self.policy.approval.expires_after_minutes * 60,
            break_glass=break_glass,
            source_key=source_key,
        )
        if request is None:
            return Outcome(False, "This command was already received; its card is in the channel.")
        self.store.audit(
            actor_id=user_id,
            action="request",
            outcome="filed",
            request_id=request.id,
            channel_id=channel_id,
            instance_id=spec.instance_id,
            detail=f"{spec.cloud_params()} reason={spec.reason!r} break_glass={break_glass}",
        )
        request = self._post_card(request)
        preview = self._refresh_preview(request)
        if break_glass:
            self.notifier.thread_reply(
                request,
                f":rotating_light: <@{user_id}> used break-glass: this request SKIPPED APPROVAL. "
                f"Reason: {spec.reason}",
            )
            return self._start(request, user_id, preview)
        missing = self.policy.approval.required
        card_note = (
            ""
            if request.message_ts
            else " Slack did not take its card just now; it will appear when Slack answers."
        )
        return Outcome(
            True,
            f"Request #{request.id} is filed. It needs {missing} approval"
            f"{'s' if missing > 1 else ''} from someone else before anything is killed."
            + card_note,
            request,
        )

    def _post_card(self, request: KillRequest) -> KillRequest:
        ts = self.notifier.post_card(request)
        if not ts:
            return request
        self.store.set_message_ts(request.id, ts)
        self.store.mark_card_synced(request.id, request.card_rev)
        return self.store.get(request.id) or request

    @staticmethod
    def _busy_message(busy: KillRequest) -> str:
        verb = {State.UNKNOWN: "may be running"}.get(busy.state, f"is {busy.state.value}")
        return (
            f"{busy.spec.instance_id} ({busy.spec.product}) already has a kill task that {verb} "
            f"(request #{busy.id}); DBbrain runs one per instance. Stop it first with "
            f"`/killtask stop {busy.spec.instance_id}`, then file again."
        )

    # ------------------------------------------------------------ decide

    def _own_request(
        self, request_id: int, channel_id: str, message_ts: str | None, user_id: str, action: str
    ) -> KillRequest | Outcome:
        """The stored request a button points at, if it really belongs to this channel and card."""
        request = self.store.get(request_id)
        if (
            request is None
            or request.channel_id != channel_id
            or (message_ts is not None and request.message_ts not in (None, message_ts))
        ):
            self.store.audit(
                actor_id=user_id,
                action=action,
                outcome="refused",
                channel_id=channel_id,
                detail=f"button for unknown or foreign request {request_id!r}",
            )
            return Outcome(
                False,
                "That button does not match a request of this channel, so nothing was changed. "
                "Use `/killtask list` to see the open requests here.",
            )
        if request.message_ts is None and message_ts:
            # The card was posted but the bot stopped before noting where: adopt it now.
            self.store.adopt_message_ts(request.id, message_ts)
            request = self.store.get(request.id) or request
        return request

    def _own_pending(
        self, request_id: int, channel_id: str, message_ts: str | None, user_id: str, action: str
    ) -> KillRequest | Outcome:
        found = self._own_request(request_id, channel_id, message_ts, user_id, action)
        if isinstance(found, KillRequest) and found.state is not State.PENDING:
            return self._closed(found)
        return found

    def _closed(self, request: KillRequest) -> Outcome:
        return Outcome(
            False,
            f"Request #{request.id} is already {request.state.value}; nothing was changed.",
            request,
        )

    def approve(
        self, user_id: str, request_id: int, channel_id: str, message_ts: str | None = None
    ) -> Outcome:
        found = self._own_pending(request_id, channel_id, message_ts, user_id, "approve")
        if isinstance(found, Outcome):
            return found
        request = found
        if request.expires_at <= self.clock():
            self._expire(request)
            return Outcome(False, f"Request #{request.id} had expired; file a new one.", request)
        decision = self._check_spec("approve", user_id, channel_id, request.spec)
        if not decision.allowed:
            return self._deny(user_id, "approve", decision, request)
        problem = approval_problem(request, user_id, self.policy.approval.allow_self_approval)
        if problem:
            return self._deny(user_id, "approve", Decision(False, problem), request)
        busy = self.store.active_on(request.spec.instance_id, request.spec.product, request.id)
        if busy is not None:
            return Outcome(False, self._busy_message(busy), request)
        if not self.store.add_approval(request.id, user_id):
            return Outcome(False, "You have already approved this request.", request)
        self.store.audit(
            actor_id=user_id,
            action="approve",
            outcome="recorded",
            request_id=request.id,
            channel_id=channel_id,
            instance_id=request.spec.instance_id,
            detail=decision.reason,
        )
        request = self.store.get(request.id) or request
        missing = approvals_missing(request, self.policy.approval.required)
        if missing:
            self.sync_card(request.id)
            self.notifier.thread_reply(
                request, f"<@{user_id}> approved. Waiting for {missing} more approval(s)."
            )
            return Outcome(True, f"Your approval is recorded; {missing} more needed.", request)
        # What the approver approved, read again just before the kill task starts.
        preview = self._refresh_preview(request)
        return self._start(request, user_id, preview)

    def _start(self, request: KillRequest, user_id: str, preview: Preview | None = None) -> Outcome:
        """Claim the request (one conditional UPDATE) and, if this call won, create the task."""
        now = self.clock()
        claimed = self.store.move(
            request.id, State.STARTING, decided_by=user_id, decided_at=now, owner=self.process_id
        )
        if claimed is None:
            latest = self.store.get(request.id) or request
            return self._closed(latest)
        self.store.audit(
            actor_id=user_id,
            action="create_kill_task",
            outcome="sending",
            request_id=request.id,
            channel_id=request.channel_id,
            instance_id=request.spec.instance_id,
            detail=str(request.spec.cloud_params()),
        )
        self.sync_card(request.id)
        try:
            result = self.cloud.create_kill_task(request.spec)
        except CloudError as error:
            self._audit_tries(request, user_id, error.tries)
            return self._start_failed(claimed, user_id, error)
        self._audit_tries(request, user_id, result.tries)
        started = self.clock()
        ends_at = None if request.spec.until_stopped else started + request.spec.duration
        running = self.store.move(
            request.id,
            State.RUNNING,
            started_at=started,
            ends_at=ends_at,
            cloud_request_id=result.request_id,
        )
        self.store.audit(
            actor_id=user_id,
            action="create_kill_task",
            outcome="running",
            request_id=request.id,
            channel_id=request.channel_id,
            instance_id=request.spec.instance_id,
            cloud_request_id=result.request_id,
            detail=f"attempts={result.attempts}",
        )
        request = running or self.store.get(request.id) or request
        self.sync_card(request.id)
        how = "used break-glass and started" if request.break_glass else "approved; started"
        self.notifier.thread_reply(
            request,
            f":white_check_mark: <@{user_id}> {how} the kill task{_seen(preview)}. "
            f"DBbrain RequestId `{result.request_id}`.",
        )
        return Outcome(True, f"Kill task for request #{request.id} is running.", request)

    def _audit_tries(self, request: KillRequest, user_id: str, tries: tuple) -> None:
        """Every try that did not succeed gets its own audit row, with DBbrain's RequestId."""
        for number, (code, cloud_request_id) in enumerate(tries, start=1):
            if code == "ok":
                continue
            self.store.audit(
                actor_id=user_id, action="create_kill_task", outcome=f"try_{number}_failed",
                request_id=request.id, channel_id=request.channel_id,
                instance_id=request.spec.instance_id, cloud_request_id=cloud_request_id,
                detail=code,
            )  # fmt: skip

    def _start_failed(self, request: KillRequest, user_id: str, error: CloudError) -> Outcome:
        state = State.UNKNOWN if error.outcome_unknown else State.FAILED
        moved = self.store.move(
            request.id,
            state,
            error_code=error.code,
            error_message=error.explain(),
            cloud_request_id=error.request_id,
        )
        self.store.audit(
            actor_id=user_id,
            action="create_kill_task",
            outcome=state.value,
            request_id=request.id,
            channel_id=request.channel_id,
            instance_id=request.spec.instance_id,
            cloud_request_id=error.request_id,
            detail=f"{error.code}: {error.message} attempts={error.attempts}",
        )
        request = moved or self.store.get(request.id) or request
        self.sync_card(request.id)
        title = "Outcome unknown" if state is State.UNKNOWN else "Failed"
        self.notifier.thread_reply(
            request, f":warning: {title} after <@{user_id}>'s approval. {error.explain()}"
        )
        return Outcome(False, f"{title}: {error.explain()}", request)

    def reject(
        self, user_id: str, request_id: int, channel_id: str, message_ts: str | None = None
    ) -> Outcome:
        found = self._own_pending(request_id, channel_id, message_ts, user_id, "reject")
        if isinstance(found, Outcome):
            return found
        request = found
        target = Target(request.spec.instance_id, request.spec.product)
        decision = self._check("reject", user_id, channel_id, target)
        # The requester may always withdraw their own request.
        if not decision.allowed and user_id != request.requester_id:
            return self._deny(user_id, "reject", decision, request)
        moved = self.store.move(
            request.id, State.REJECTED, decided_by=user_id, decided_at=self.clock()
        )
        if moved is None:
            return self._closed(self.store.get(request.id) or request)
        self.store.audit(
            actor_id=user_id,
            action="reject",
            outcome="rejected",
            request_id=request.id,
            channel_id=channel_id,
            instance_id=request.spec.instance_id,
        )
        self.sync_card(request.id)
        self.notifier.thread_reply(moved, f":no_entry_sign: <@{user_id}> rejected this request.")
        return Outcome(True, f"Request #{request.id} is rejected.", moved)

    # ------------------------------------------------------------ stop

    def stop(
        self, user_id: str, request_id: int, channel_id: str, message_ts: str | None = None
    ) -> Outcome:
        found = self._own_request(request_id, channel_id, message_ts, user_id, "stop")
        if isinstance(found, Outcome):
            return found
        return self._stop(user_id, channel_id, found)

    def stop_instance(
        self, user_id: str, channel_id: str, instance_id: str, product: str, reason: str | None
    ) -> Outcome:
        """`/killtask stop`: stop the instance's task, even one this bot has no record of."""
        request = self.store.active_on(instance_id, product)
        if request is not None:
            return self._stop(user_id, channel_id, request, reason)
        decision = self._check("stop", user_id, channel_id, Target(instance_id, product))
        if not decision.allowed:
            return self._deny(
                user_id, "stop", decision, channel_id=channel_id, instance_id=instance_id
            )
        try:
            result = self.cloud.cancel_kill_task(instance_id, product)
        except CloudError as error:
            self.store.audit(
                actor_id=user_id, action="cancel_kill_task", outcome="failed",
                channel_id=channel_id, instance_id=instance_id,
                cloud_request_id=error.request_id, detail=f"{error.code}: {error.message}",
            )  # fmt: skip
            return Outcome(False, f"Could not stop: {error.explain()}")
        self.store.audit(
            actor_id=user_id, action="cancel_kill_task", outcome="sent",
            channel_id=channel_id, instance_id=instance_id,
            cloud_request_id=result.request_id, detail=f"no bot request; reason={reason!r}",
        )  # fmt: skip
        return Outcome(
            True,
            f"No kill task started by this bot is running on {instance_id}, so I asked DBbrain "
            f"to cancel whatever task runs there (RequestId `{result.request_id}`).",
        )

    def _stop(
        self, user_id: str, channel_id: str, request: KillRequest, reason: str | None = None
    ) -> Outcome:
        if request.state not in (State.RUNNING, State.UNKNOWN):
            return self._closed(request)
        target = Target(request.spec.instance_id, request.spec.product)
        decision = self._check("stop", user_id, channel_id, target)
        if not decision.allowed:
            return self._deny(user_id, "stop", decision, request, channel_id=channel_id)
        try:
            result = self.cloud.cancel_kill_task(request.spec.instance_id, request.spec.product)
        except CloudError as error:
            self.store.audit(
                actor_id=user_id, action="cancel_kill_task", outcome="failed",
                request_id=request.id, channel_id=channel_id,
                instance_id=request.spec.instance_id, cloud_request_id=error.request_id,
                detail=f"{error.code}: {error.message}",
            )  # fmt: skip
            return Outcome(False, f"Could not stop the task: {error.explain()}", request)
        moved = self.store.move(
            request.id, State.STOPPED, stopped_by=user_id, stopped_at=self.clock()
        )
        self.store.audit(
            actor_id=user_id, action="cancel_kill_task", outcome="stopped",
            request_id=request.id, channel_id=channel_id, instance_id=request.spec.instance_id,
            cloud_request_id=result.request_id, detail=f"reason={reason!r}",
        )  # fmt: skip
        if moved is None:
            latest = self.store.get(request.id) or request
            return Outcome(True, f"Request #{request.id} was already {latest.state.value}.", latest)
        self.sync_card(request.id)
        why = f" Reason: {reason}" if reason else ""
        self.notifier.thread_reply(
            moved,
            f":octagonal_sign: <@{user_id}> stopped the kill task. "
            f"DBbrain RequestId `{result.request_id}`.{why}",
        )
        return Outcome(True, f"Kill task of request #{request.id} is stopped.", moved)

    # ------------------------------------------------------------ preview

    def read_preview(self, spec: KillTaskSpec) -> Preview:
        """What the kill task would hit now, matched by the bot with the kill task's rules."""
        now = self.clock()
        try:
            listed = self.cloud.list_sessions(
                spec.instance_id, spec.product, list_filters(spec), PREVIEW_LIMIT
            )
        except CloudError as error:
            return Preview(read_at=now, error=error.explain(), cloud_request_id=error.request_id)
        return summarize(
            spec,
            listed.rows,
            read_at=now,
            limit=PREVIEW_LIMIT,
            protected_users=self.policy.protected_users,
            show_statements=self.policy.show_statements,
            cloud_request_id=listed.request_id,
        )

    def _refresh_preview(self, request: KillRequest) -> Preview:
        preview = self.read_preview(request.spec)
        self.store.set_preview(request.id, preview.to_dict())
        self.sync_card(request.id)
        return preview

    def preview(self, user_id: str, channel_id: str, spec: KillTaskSpec) -> Outcome:
        """`/killtask preview`: the same summary as the card, filing nothing."""
        target = Target(spec.instance_id, spec.product)
        decision = self._check("preview", user_id, channel_id, target)
        if not decision.allowed:
            return self._deny(
                user_id, "preview", decision, channel_id=channel_id, instance_id=spec.instance_id
            )
        preview = self.read_preview(spec)
        self.store.audit(
            actor_id=user_id, action="preview", outcome="failed" if preview.error else "read",
            channel_id=channel_id, instance_id=spec.instance_id,
            cloud_request_id=preview.cloud_request_id,
            detail=f"{spec.cloud_params()} matched={preview.matched} read={preview.read}",
        )  # fmt: skip
        return Outcome(preview.error is None, preview.error or "", preview=preview)

    def refresh_preview(
        self, user_id: str, request_id: int, channel_id: str, message_ts: str | None = None
    ) -> Outcome:
        found = self._own_request(request_id, channel_id, message_ts, user_id, "preview")
        if isinstance(found, Outcome):
            return found
        if found.state not in (State.PENDING, State.RUNNING):
            return self._closed(found)
        target = Target(found.spec.instance_id, found.spec.product)
        decision = self._check("preview", user_id, channel_id, target)
        if not decision.allowed:
            return self._deny(user_id, "preview", decision, found)
        preview = self._refresh_preview(found)
        if preview.error:
            return Outcome(False, f"Could not read the sessions: {preview.error}", found)
        return Outcome(True, "", found, preview=preview)

    # ------------------------------------------------------------ read

    def open_requests(self, user_id: str, channel_id: str) -> Outcome | list[KillRequest]:
        if self.policy.channels is not None and channel_id not in self.policy.channels:
            return Outcome(False, "This channel is not in the policy's `channels` list.")
        groups = self.membership.groups_of(user_id, self.policy.groups)
        if not self.policy.is_member(user_id, groups):
            return Outcome(False, "Not allowed: you are not a member of any role in the policy.")
        return self.store.open_in_channel(channel_id)

    # ------------------------------------------------------------ time passes

    def tick(self) -> None:
        """Expire, finish, give up on lost starts, and bring stale cards up to date."""
        now = self.clock()
        self.store.heartbeat(self.process_id)
        for request in self.store.due_to_expire(now):
            self._expire(request)
        for request in self.store.due_to_finish(now):
            moved = self.store.move(request.id, State.FINISHED)
            if moved is not None:
                self.store.audit(
                    actor_id=SYSTEM, action="finish", outcome="finished", request_id=request.id,
                    channel_id=request.channel_id, instance_id=request.spec.instance_id,
                )  # fmt: skip
                self.sync_card(request.id)
                self.notifier.thread_reply(
                    moved, "The kill task's duration has passed; it is finished."
                )
        for request in self.store.lost_starts(
            stale_before=now - self.heartbeat_grace, started_before=now - self.starting_timeout
        ):
            self.mark_lost_start(request)
        for request in self.store.cards_behind():
            self.sync_card(request.id)
        stale = now - self.card_claim_timeout
        for request in self.store.unposted_cards(claimed_before=stale):
            if self.store.claim_card_post(request.id, claimed_before=stale):
                self._post_card(request)

    def mark_lost_start(self, request: KillRequest) -> None:
        """A start whose process died mid-call: say so, and never send it again by itself."""
        error = CloudError(
            "Interrupted",
            "the bot stopped while CreateKillTask was in flight",
            outcome_unknown=True,
        )
        moved = self.store.move(
            request.id, State.UNKNOWN, error_code=error.code, error_message=error.explain()
        )
        if moved is not None:
            self.store.audit(
                actor_id=SYSTEM, action="create_kill_task", outcome="unknown",
                request_id=request.id, channel_id=request.channel_id,
                instance_id=request.spec.instance_id, detail=error.message,
            )  # fmt: skip
            self.sync_card(request.id)
            self.notifier.thread_reply(moved, f":warning: Outcome unknown. {error.explain()}")

    def _expire(self, request: KillRequest) -> None:
        moved = self.store.move(request.id, State.EXPIRED)
        if moved is None:
            return
        self.store.audit(
            actor_id=SYSTEM, action="expire", outcome="expired", request_id=request.id,
            channel_id=request.channel_id, instance_id=request.spec.instance_id,
        )  # fmt: skip
        self.sync_card(request.id)
        self.notifier.thread_reply(
            moved, "This request expired without enough approvals; nothing was killed."
        )

    def sync_card(self, request_id: int) -> None:
        """Render the card from the stored row; remember the revision Slack accepted."""
        request = self.store.get(request_id)
        if request is None or request.message_ts is None:
            return
        if self.notifier.update_card(request):
            self.store.mark_card_synced(request.id, request.card_rev)


def _seen(preview: Preview | None) -> str:
    if preview is None or preview.error:
        return " (the live preview could not be read just before)"
    more = "+" if preview.truncated else ""
    noun = "session" if preview.matched == 1 else "sessions"
    return f" with {preview.matched}{more} matching {noun} seen just before"
