"""The approval state machine: a request's states, the moves between them, and who may approve.

No I/O here. The store applies each move as one conditional UPDATE (`WHERE state IN (...)`),
so two clicks, two replicas or a Slack retry can never both win the same move.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.killtask import KillTaskSpec


class State(StrEnum):
    PENDING = "pending"  # waiting for approvals
    APPROVED = "approved"  # enough approvals; not yet claimed for sending, so safe to start
    STARTING = "starting"  # claimed; CreateKillTask is being sent, exactly once
    RUNNING = "running"  # DBbrain accepted the task
    FAILED = "failed"  # DBbrain refused it, nothing runs
    UNKNOWN = "unknown"  # the call may or may not have reached DBbrain; never re-sent
    REJECTED = "rejected"
    EXPIRED = "expired"
    STOPPED = "stopped"  # cancelled by a person
    FINISHED = "finished"  # its duration has passed


MOVES: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.APPROVED, State.REJECTED, State.EXPIRED}),
    State.APPROVED: frozenset({State.STARTING}),
    # A one-shot kill goes from starting straight to finished: nothing stays running.
    State.STARTING: frozenset({State.RUNNING, State.FAILED, State.UNKNOWN, State.FINISHED}),
    State.RUNNING: frozenset({State.STOPPED, State.FINISHED}),
    State.UNKNOWN: frozenset({State.STOPPED}),
    State.FAILED: frozenset(),
    State.REJECTED: frozenset(),
    State.EXPIRED: frozenset(),
    State.STOPPED: frozenset(),
    State.FINISHED: frozenset(),
}

OPEN_STATES = frozenset(
    {State.PENDING, State.APPROVED, State.STARTING, State.RUNNING, State.UNKNOWN}
)
# States in which a kill task is, or is about to be, alive on the instance: a new one must wait.
ACTIVE_STATES = frozenset({State.APPROVED, State.STARTING, State.RUNNING, State.UNKNOWN})


def sources_of(target: State) -> frozenset[State]:
    """The states from which `target` may be reached: the WHERE clause of the move."""
    return frozenset(s for s, targets in MOVES.items() if target in targets)


@dataclass(frozen=True)
class KillRequest:
    """A filed request as stored; the bot trusts this record, never values carried in buttons."""

    id: int
    channel_id: str
    requester_id: str
    spec: KillTaskSpec
    state: State
    created_at: float
    expires_at: float
    break_glass: bool = False
    message_ts: str | None = None
    approvers: tuple[str, ...] = ()
    decided_by: str | None = None
    decided_at: float | None = None
    started_at: float | None = None
    ends_at: float | None = None
    cloud_request_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    stopped_by: str | None = None
    stopped_at: float | None = None
    card_rev: int = 0
    preview: dict | None = None  # the last live preview, as stored (see bot.preview)
    account: str | None = None  # the policy's account the task runs in
    region: str | None = None  # the instance's region, as found when it was filed
    effect: dict | None = None  # a running task's effect so far (see bot.effect)
    kill_result: dict | None = None  # what a one-shot kill did (see bot.oneshot)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


def approval_problem(
    request: KillRequest, approver_id: str, allow_self_approval: bool
) -> str | None:
    """Why this person's approval cannot count, or None when it can."""
    if request.state is not State.PENDING:
        return f"request #{request.id} is already {request.state.value}; nothing was changed"
    if approver_id == request.requester_id and not allow_self_approval:
        return (
            "you filed this request, and the policy needs someone else to approve it; "
            "ask another approver in this channel"
        )
    if approver_id in request.approvers:
        return "you have already approved this request; it is waiting for another approver"
    return None


def approvals_missing(request: KillRequest, required: int) -> int:
    return max(0, required - len(request.approvers))
