"""Use cases: file, approve, reject, start, stop, preview and list.

Each use case that a person triggers has a quick part, which stores the decision before Slack
gets its ack, and a slow part (Slack, DBbrain) that runs after it. The clock (bot.clock)
finishes any slow part a dead process left, from what the quick part stored.

The service speaks to the outside only through small ports: the store, the cloud gateway, a
notifier that shows cards and thread replies, and a membership lookup for user groups. It
returns data (bot.outcomes); the Slack layer puts it in words.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.access import Access, Membership
from bot.audit import AuditEntry, entry
from bot.cards import Cards, Notifier
from bot.cloud import Cloud
from bot.effect import Effects
from bot.estate import Estate, InstanceInfo
from bot.killtask import KillTaskSpec
from bot.locating import locate_for_filing, options_for
from bot.oneshot import OneShot
from bot.outcomes import Announcement, Happening, Outcome, Published
from bot.policy import Decision, Policy, Target
from bot.preview import Preview
from bot.reading import PREVIEW_LIMIT, Reader
from bot.requests import KillRequest, State, approval_problem, approvals_missing
from bot.starting import Starter, closed
from bot.stopping import Stopper
from bot.store import Store

log = logging.getLogger(__name__)

__all__ = ["PREVIEW_LIMIT", "KillTaskService", "busy_message"]


class KillTaskService:
    def __init__(
        self,
        store: Store,
        cloud: Cloud,
        policy: Policy,
        notifier: Notifier,
        membership: Membership,
        clock: Callable[[], float] = time.time,
        process_id: str = "local",
        estate: Estate | None = None,  # None: one account, region not tracked (unit tests)
    ):
        self.estate = estate
        self.store = store
        self.cloud = cloud
        self.access = Access(policy, membership, store)
        self.notifier = notifier
        self.clock = clock
        self.process_id = process_id
        policy_now = lambda: self.policy  # noqa: E731 - read per use: the policy may reload
        self.reader = Reader(cloud, policy_now, clock)
        self.cards = Cards(store, notifier, self.read_preview)
        self.effects = Effects(store, self.reader, self.cards, policy_now, clock)
        oneshot = OneShot(
            store, cloud, self.cards, self.reader, policy_now, self.access.may_kill_all, clock
        )
        self.starter = Starter(
            store, cloud, self.cards, self.reader, clock, process_id, oneshot,
            fresh_for=lambda: policy_now().sample_seconds,
        )  # fmt: skip
        self.stopper = Stopper(
            store, cloud, self.cards, self.access, clock, on_end=self.effects.finish
        )

    @property
    def policy(self) -> Policy:
        return self.access.policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        """A reloaded policy applies to every action that starts after this."""
        self.access.policy = policy

    # ------------------------------------------------------------ file

    def file(
        self, user_id: str, channel_id: str, spec: KillTaskSpec, *, break_glass: bool = False,
        source_key: str | None = None,
    ) -> Outcome:  # fmt: skip
        """The quick part: check, then store the request. `publish` does the rest."""
        decision = self.access.precheck(user_id, channel_id, spec, break_glass)
        if not decision.allowed:
            return self.access.deny(
                user_id, "request", decision, channel_id=channel_id, instance_id=spec.instance_id
            )
        # A one-shot kill runs beside a kill task: DBbrain limits only kill tasks to one.
        busy = None if spec.once else self.store.active_on(spec.instance_id, spec.product)
        if busy is not None:
            return Outcome(False, busy_message(busy), busy, "instance_id")
        where = locate_for_filing(self.estate, spec)
        if isinstance(where, Outcome):
            return where
        account, region = where
        detail = f"{spec.cloud_params()} reason={spec.reason!r} break_glass={break_glass}"
        if account:
            detail += f" account={account} region={region or 'unknown'}"
        request = self.store.insert_request(
            channel_id=channel_id,
            requester_id=user_id,
            spec=spec,
            expires_at=self.clock() + self.policy.approval.expires_after_minutes * 60,
            owner=self.process_id,
            audit=lambda new_id: AuditEntry(
                user_id, "request", "filed", new_id, channel_id, spec.instance_id, detail=detail
            ),
            break_glass=break_glass,
            source_key=source_key,
            account=account,
            region=region,
        )
        if request is None:
            return Outcome(False, "This command was already received; its card is in the channel.")
        if break_glass:
            text = f"Request #{request.id} skips approval (break-glass) and starts now."
        else:
            missing = self.policy.requirement(spec).required
            text = (
                f"Request #{request.id} is filed. It needs {missing} approval"
                f"{'s' if missing > 1 else ''} from someone else before anything is killed."
            )
        return Outcome(True, text, request)

    def instance_options(self, user_id: str, channel_id: str, typed: str) -> list[InstanceInfo]:
        return options_for(self.estate, self.access, user_id, channel_id, typed)

    def publish(self, request: KillRequest) -> Published:
        """The first slow part of filing: post the card."""
        request, card = self.cards.post(request)
        if card.ts:
            self.announce_filed(request)
        return Published(request, card)

    def follow_filing(self, request: KillRequest) -> Outcome | None:
        """The second: read the live preview, or start a break-glass request at once."""
        if request.state is State.APPROVED and request.break_glass:
            glass = Announcement(
                Happening.BREAK_GLASS, request.requester_id, reason=request.spec.reason
            )
            self.notifier.announce(request, glass)
            return self.starter.start(request)
        self.cards.refresh_preview(request)
        return None

    def announce_filed(self, request: KillRequest) -> None:
        """Mention the policy's `notify` in the thread of a card just posted."""
        approval = self.policy.approval
        if request.state is not State.PENDING or not approval.notify:
            return
        needed = self.policy.requirement(request.spec)
        filed = Announcement(
            Happening.FILED, request.requester_id, mentions=approval.notify,
            missing=needed.required, needed_from=needed.from_,
        )  # fmt: skip
        self.notifier.announce(request, filed)

    # ------------------------------------------------------------ decide

    def own_request(
        self, request_id: int, channel_id: str, message_ts: str, user_id: str, action: str
    ) -> KillRequest | Outcome:
        """The stored request a button points at, if it really belongs to this channel and card."""
        request = self.store.get(request_id)
        if (
            request is None
            or request.channel_id != channel_id
            or request.message_ts not in (None, message_ts)
        ):
            self.store.audit(
                AuditEntry(
                    user_id, action, "refused", channel_id=channel_id,
                    detail=f"button for unknown or foreign request {request_id!r}",
                )
            )  # fmt: skip
            return Outcome(
                False,
                "That button does not match a request of this channel, so nothing was changed. "
                "Use `/killtask list` to see the open requests here.",
            )
        if request.message_ts is None:
            # The card was posted but the bot stopped before noting where: adopt it now.
            request = self.store.adopt_message_ts(request.id, message_ts) or request
        return request

    def _own_pending(
        self, request_id: int, channel_id: str, message_ts: str, user_id: str, action: str
    ) -> KillRequest | Outcome:
        found = self.own_request(request_id, channel_id, message_ts, user_id, action)
        if isinstance(found, KillRequest) and found.state is not State.PENDING:
            return closed(found)
        return found

    def approve(self, user_id: str, request_id: int, channel_id: str, message_ts: str) -> Outcome:
        """The quick part: the approval, and the decision when it is the last one needed."""
        found = self._own_pending(request_id, channel_id, message_ts, user_id, "approve")
        return found if isinstance(found, Outcome) else self.approve_bound(user_id, found)

    def approve_bound(self, user_id: str, request: KillRequest) -> Outcome:
        """Every check of an approval, for a request already bound to the click (by its card,
        or by App Home, bot.home)."""
        if request.expires_at <= self.clock():
            return Outcome(False, f"Request #{request.id} had expired; file a new one.", request)
        decision = self.access.check_spec("approve", user_id, request.channel_id, request.spec)
        if not decision.allowed:
            return self.access.deny(user_id, "approve", decision, request)
        problem = approval_problem(request, user_id, self.policy.approval.allow_self_approval)
        if problem:
            return self.access.deny(user_id, "approve", Decision(False, problem), request)
        needed = self.policy.requirement(request.spec)
        if not self.access.counts(user_id, needed):
            return self.access.deny(user_id, "approve", Access.not_counted(needed), request)
        spec = request.spec
        busy = (
            None if spec.once else self.store.active_on(spec.instance_id, spec.product, request.id)
        )
        if busy is not None:
            return Outcome(False, busy_message(busy), request)
        result, now = self.store.approve(
            request.id, user_id, needed.required, self.process_id,
            entry(request, user_id, "approve", "recorded", detail=decision.reason),
        )  # fmt: skip
        if result == "again" or now is None:
            return Outcome(False, "You have already approved this request.", request)
        if result == "closed":
            return closed(now)
        missing = approvals_missing(now, needed.required)
        if missing:
            return Outcome(True, f"Your approval is recorded; {missing} more needed.", now)
        return Outcome(True, "Your approval is recorded; the kill task starts now.", now)

    def reject(self, user_id: str, request_id: int, channel_id: str, message_ts: str) -> Outcome:
        found = self._own_pending(request_id, channel_id, message_ts, user_id, "reject")
        return found if isinstance(found, Outcome) else self.reject_bound(user_id, found)

    def reject_bound(self, user_id: str, request: KillRequest) -> Outcome:
        target = Target(request.spec.instance_id, request.spec.product)
        decision = self.access.check("reject", user_id, request.channel_id, target)
        # The requester may always withdraw their own request.
        if not decision.allowed and user_id != request.requester_id:
            return self.access.deny(user_id, "reject", decision, request)
        moved = self.store.move(
            request.id, State.REJECTED, decided_by=user_id, decided_at=self.clock(),
            audit=[entry(request, user_id, "reject", "rejected")],
        )  # fmt: skip
        if moved is None:
            return closed(self.store.get(request.id) or request)
        return Outcome(True, f"Request #{request.id} is rejected.", moved)

    def carry_out(self, decided: Outcome, actor_id: str) -> Outcome | None:
        """The slow part of a decision already stored: show it, and start an approved task."""
        request = decided.request
        if not decided.ok or request is None:
            return None
        if request.state is State.APPROVED:
            return self.starter.start(request, approved_by=actor_id)
        self.cards.sync(request)
        if request.state is State.PENDING:
            needed = self.policy.requirement(request.spec)
            missing = approvals_missing(request, needed.required)
            event = Announcement(
                Happening.APPROVAL_RECORDED, actor_id, missing=missing, needed_from=needed.from_
            )
            self.notifier.announce(request, event)
        elif request.state is State.REJECTED:
            self.notifier.announce(request, Announcement(Happening.REJECTED, actor_id))
        return None

    # ------------------------------------------------------------ stop

    def stop(self, user_id: str, request_id: int, channel_id: str, message_ts: str) -> Outcome:
        found = self.own_request(request_id, channel_id, message_ts, user_id, "stop")
        if isinstance(found, Outcome):
            return found
        return self.stopper.stop(user_id, channel_id, found)

    def stop_instance(
        self, user_id: str, channel_id: str, instance_id: str, product: str, reason: str | None
    ) -> Outcome:
        return self.stopper.stop_instance(user_id, channel_id, instance_id, product, reason)

    # ------------------------------------------------------------ preview and list

    def read_preview(self, spec: KillTaskSpec) -> Preview:
        """What the kill task would hit now, with the lock holder and DBbrain's diagnosis."""
        return self.reader.preview(spec)

    def preview(self, user_id: str, channel_id: str, spec: KillTaskSpec) -> Outcome:
        """`/killtask preview`: the same summary as the card, filing nothing."""
        target = Target(spec.instance_id, spec.product)
        decision = self.access.check("preview", user_id, channel_id, target)
        if not decision.allowed:
            return self.access.deny(
                user_id, "preview", decision, channel_id=channel_id, instance_id=spec.instance_id
            )
        preview = self.read_preview(spec)
        self.store.audit(
            entry(None, user_id, "preview", "failed" if preview.error else "read",
                  channel_id=channel_id, instance_id=spec.instance_id,
                  cloud_request_id=preview.cloud_request_id,
                  detail=f"{spec.cloud_params()} matched={preview.matched} read={preview.read}")
        )  # fmt: skip
        return Outcome(preview.error is None, preview.error or "", preview=preview)

    def refresh_preview(
        self, user_id: str, request_id: int, channel_id: str, message_ts: str
    ) -> Outcome:
        found = self.own_request(request_id, channel_id, message_ts, user_id, "preview")
        if isinstance(found, Outcome):
            return found
        if found.state not in (State.PENDING, State.RUNNING):
            return closed(found)
        target = Target(found.spec.instance_id, found.spec.product)
        decision = self.access.check("preview", user_id, channel_id, target)
        if not decision.allowed:
            return self.access.deny(user_id, "preview", decision, found)
        request, preview = self.cards.refresh_preview(found)
        if preview.error:
            return Outcome(False, f"Could not read the sessions: {preview.error}", request)
        return Outcome(True, "", request, preview=preview)

    def open_requests(self, user_id: str, channel_id: str) -> Outcome | list[KillRequest]:
        channels = self.policy.channels
        if channels is not None and channel_id not in channels:
            return Outcome(False, "This channel is not in the policy's `channels` list.")
        if not self.access.is_member(user_id):
            return Outcome(False, "Not allowed: you are not a member of any role in the policy.")
        return self.store.open_in_channel(channel_id)


# ---------------------------------------------------------------- plain words


def busy_message(busy: KillRequest) -> str:
    verb = {State.UNKNOWN: "may be running", State.APPROVED: "is about to start"}.get(
        busy.state, f"is {busy.state.value}"
    )
    return (
        f"{busy.spec.instance_id} ({busy.spec.product}) already has a kill task that {verb} "
        f"(request #{busy.id}); DBbrain runs one per instance. Stop it first with "
        f"`/killtask stop {busy.spec.instance_id}`, then file again."
    )
