"""App Home as data: what one person may approve now, what runs (and whether they may stop
it), and what ended lately. The Slack layer (bot.slack.home) turns it into a view."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.audit import AuditEntry
from bot.outcomes import Outcome
from bot.policy import Target
from bot.requests import KillRequest, State, approval_problem
from bot.service import KillTaskService
from bot.starting import closed

RECENT = 20
LISTED = 15  # per section: a home view holds at most 100 blocks


@dataclass(frozen=True)
class HomeLists:
    member: bool
    waiting: list[KillRequest] = field(default_factory=list)
    running: list[tuple[KillRequest, bool]] = field(default_factory=list)  # with "may stop"
    recent: list[KillRequest] = field(default_factory=list)


def from_home(service: KillTaskService, verb: str, user_id: str, request_id: int) -> Outcome:
    """A button on someone's App Home. It carries no channel or card, so the request is bound
    by its number alone and every check then uses the stored request's channel: the same
    checks, in the same code, as the card's buttons (which also check the card itself)."""
    request = service.store.get(request_id)
    if request is None:
        service.store.audit(
            AuditEntry(user_id, verb, "refused", detail=f"home button for {request_id!r}")
        )
        return Outcome(False, f"There is no request #{request_id}; nothing was changed.")
    if verb == "stop":
        return service.stopper.stop(user_id, request.channel_id, request)
    if request.state is not State.PENDING:
        return closed(request)
    if verb == "approve":
        return service.approve_bound(user_id, request)
    return service.reject_bound(user_id, request)


def may_approve(service: KillTaskService, user_id: str, request: KillRequest) -> bool:
    """The same checks an Approve click makes, asked without recording anything."""
    if request.state is not State.PENDING or request.expires_at <= service.clock():
        return False
    access = service.access
    if not access.check_spec("approve", user_id, request.channel_id, request.spec).allowed:
        return False
    if approval_problem(request, user_id, service.policy.approval.allow_self_approval):
        return False
    return access.counts(user_id, service.policy.requirement(request.spec))


def home_lists(service: KillTaskService, user_id: str) -> HomeLists:
    if not service.access.is_member(user_id):
        return HomeLists(member=False)
    store = service.store
    waiting = [r for r in store.in_states([State.PENDING]) if may_approve(service, user_id, r)]
    running = []
    for request in store.in_states([State.RUNNING, State.UNKNOWN], limit=LISTED):
        target = Target(request.spec.instance_id, request.spec.product)
        allowed = service.access.check("stop", user_id, request.channel_id, target).allowed
        running.append((request, allowed))
    return HomeLists(True, waiting[:LISTED], running, store.recently_ended(RECENT))
