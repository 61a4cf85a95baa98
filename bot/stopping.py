"""Stopping a kill task: CancelKillTask for the instance, then the request marked stopped.

Cancel works per instance and is safe to send twice, so a stop is retried by the gateway and
may also be sent for a task this bot has no record of (`/killtask stop <instance>`).
"""

from __future__ import annotations

from collections.abc import Callable

from bot.access import Access
from bot.audit import entry
from bot.cards import Cards
from bot.cloud import Cloud, CloudError
from bot.outcomes import Announcement, Happening, Outcome
from bot.policy import Target
from bot.requests import KillRequest, State
from bot.starting import closed
from bot.store import Store


class Stopper:
    def __init__(
        self, store: Store, cloud: Cloud, cards: Cards, access: Access,
        clock: Callable[[], float], on_end: Callable[[KillRequest, Happening], None],
    ):  # fmt: skip
        self.on_end = on_end  # the end-of-task summary (bot.effect.Effects.finish)
        self.store = store
        self.cloud = cloud
        self.cards = cards
        self.access = access
        self.clock = clock

    def stop(
        self, user_id: str, channel_id: str, request: KillRequest, reason: str | None = None
    ) -> Outcome:
        if request.state not in (State.RUNNING, State.UNKNOWN):
            return closed(request)
        target = Target(request.spec.instance_id, request.spec.product)
        decision = self.access.check("stop", user_id, channel_id, target)
        if not decision.allowed:
            return self.access.deny(user_id, "stop", decision, request, channel_id=channel_id)
        try:
            result = self.cloud.cancel_kill_task(request.spec.instance_id, request.spec.product)
        except CloudError as error:
            self.store.audit(
                entry(request, user_id, "cancel_kill_task", "failed", channel_id=channel_id,
                      cloud_request_id=error.request_id, detail=f"{error.code}: {error.message}")
            )  # fmt: skip
            return Outcome(False, f"Could not stop the task: {error.explain()}", request)
        stopped = entry(
            request, user_id, "cancel_kill_task", "stopped", channel_id=channel_id,
            cloud_request_id=result.request_id, detail=f"reason={reason!r}",
        )  # fmt: skip
        moved = self.store.move(
            request.id, State.STOPPED, stopped_by=user_id, stopped_at=self.clock(),
            audit=[stopped],
        )  # fmt: skip
        if moved is None:
            self.store.audit(stopped)  # DBbrain was asked all the same: the log says so
            latest = self.store.get(request.id) or request
            return Outcome(True, f"Request #{request.id} was already {latest.state.value}.", latest)
        self.cards.sync(moved)
        self.cards.notifier.announce(
            moved,
            Announcement(
                Happening.STOPPED, user_id, cloud_request_id=result.request_id, reason=reason
            ),
        )
        if request.state is State.RUNNING:
            self.on_end(moved, Happening.STOPPED)
        return Outcome(True, f"Kill task of request #{request.id} is stopped.", moved)

    def stop_instance(
        self, user_id: str, channel_id: str, instance_id: str, product: str, reason: str | None
    ) -> Outcome:
        """`/killtask stop`: stop the instance's task, even one this bot has no record of."""
        request = self.store.active_on(instance_id, product)
        if request is not None:
            return self.stop(user_id, channel_id, request, reason)
        decision = self.access.check("stop", user_id, channel_id, Target(instance_id, product))
        if not decision.allowed:
            return self.access.deny(
                user_id, "stop", decision, channel_id=channel_id, instance_id=instance_id
            )
        try:
            result = self.cloud.cancel_kill_task(instance_id, product)
        except CloudError as error:
            self.store.audit(
                entry(None, user_id, "cancel_kill_task", "failed", channel_id=channel_id,
                      instance_id=instance_id, cloud_request_id=error.request_id,
                      detail=f"{error.code}: {error.message}")
            )  # fmt: skip
            return Outcome(False, f"Could not stop: {error.explain()}")
        self.store.audit(
            entry(None, user_id, "cancel_kill_task", "sent", channel_id=channel_id,
                  instance_id=instance_id, cloud_request_id=result.request_id,
                  detail=f"no bot request; reason={reason!r}")
        )  # fmt: skip
        return Outcome(
            True,
            f"No kill task started by this bot is running on {instance_id}, so I asked DBbrain "
            f"to cancel whatever task runs there (RequestId {result.request_id}).",
        )
