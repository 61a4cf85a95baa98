"""The approval state machine: which moves exist, and whose approval counts."""

from __future__ import annotations

import pytest

from bot.killtask import KillTaskSpec
from bot.requests import (
    ACTIVE_STATES,
    MOVES,
    OPEN_STATES,
    KillRequest,
    State,
    approval_problem,
    approvals_missing,
    sources_of,
)

TERMINAL = {State.FAILED, State.REJECTED, State.EXPIRED, State.STOPPED, State.FINISHED}
REQUESTER = "U0REQUESTER"
APPROVER = "U0APPROVER"


def request(state: State = State.PENDING, approvers: tuple[str, ...] = ()) -> KillRequest:
    return KillRequest(
        id=7,
        channel_id="C0INCIDENT",
        requester_id=REQUESTER,
        spec=KillTaskSpec(instance_id="cdb-abc12345", duration=600, user="app"),
        state=state,
        created_at=1000.0,
        expires_at=2800.0,
        approvers=approvers,
    )


# ---------------------------------------------------------------- moves


def test_every_state_has_an_entry() -> None:
    assert set(MOVES) == set(State)


def test_the_moves() -> None:
    assert {
        State.PENDING: {State.APPROVED, State.REJECTED, State.EXPIRED},
        State.APPROVED: {State.STARTING},
        State.STARTING: {State.RUNNING, State.FAILED, State.UNKNOWN, State.FINISHED},
        State.RUNNING: {State.STOPPED, State.FINISHED},
        State.UNKNOWN: {State.STOPPED},
        **{state: frozenset() for state in TERMINAL},
    } == MOVES


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_have_no_moves(state: State) -> None:
    assert MOVES[state] == frozenset()
    assert state not in OPEN_STATES


def test_open_states_are_exactly_those_with_moves() -> None:
    assert {state for state, targets in MOVES.items() if targets} == OPEN_STATES
    assert OPEN_STATES - {State.PENDING} == ACTIVE_STATES


def test_no_state_moves_to_itself_or_back_to_pending() -> None:
    assert all(state not in targets for state, targets in MOVES.items())
    assert sources_of(State.PENDING) == frozenset()


@pytest.mark.parametrize(
    ("target", "sources"),
    [
        (State.PENDING, set()),
        (State.APPROVED, {State.PENDING}),
        (State.STARTING, {State.APPROVED}),  # CreateKillTask is sent once, after one claim
        (State.REJECTED, {State.PENDING}),
        (State.EXPIRED, {State.PENDING}),
        (State.RUNNING, {State.STARTING}),
        (State.FAILED, {State.STARTING}),
        (State.UNKNOWN, {State.STARTING}),
        (State.STOPPED, {State.RUNNING, State.UNKNOWN}),
        (State.FINISHED, {State.RUNNING, State.STARTING}),  # STARTING: a one-shot kill
    ],
)
def test_sources_of(target: State, sources: set[State]) -> None:
    assert sources_of(target) == sources


def test_is_open() -> None:
    assert request(State.PENDING).is_open
    assert request(State.UNKNOWN).is_open
    assert not request(State.STOPPED).is_open


# ---------------------------------------------------------------- approvals


def test_another_person_may_approve_a_pending_request() -> None:
    assert approval_problem(request(), APPROVER, allow_self_approval=False) is None


def test_self_approval_is_refused() -> None:
    problem = approval_problem(request(), REQUESTER, allow_self_approval=False)
    assert problem is not None
    assert "you filed this request" in problem


def test_self_approval_when_the_policy_allows_it() -> None:
    assert approval_problem(request(), REQUESTER, allow_self_approval=True) is None


@pytest.mark.parametrize("allow_self", [False, True])
def test_approving_twice_is_refused(allow_self: bool) -> None:
    problem = approval_problem(request(approvers=(APPROVER,)), APPROVER, allow_self)
    assert problem is not None
    assert "already approved" in problem
    own = approval_problem(request(approvers=(REQUESTER,)), REQUESTER, allow_self_approval=True)
    assert own is not None and "already approved" in own


@pytest.mark.parametrize("state", sorted(set(State) - {State.PENDING}))
def test_only_pending_requests_can_be_approved(state: State) -> None:
    problem = approval_problem(request(state), APPROVER, allow_self_approval=True)
    assert problem == f"request #7 is already {state.value}; nothing was changed"


def test_the_state_is_checked_before_the_person() -> None:
    problem = approval_problem(request(State.RUNNING, (APPROVER,)), REQUESTER, False)
    assert problem is not None
    assert "already running" in problem


@pytest.mark.parametrize(
    ("required", "approvers", "missing"),
    [
        (1, (), 1),
        (1, (APPROVER,), 0),
        (2, (APPROVER,), 1),
        (2, (APPROVER, "U0OTHER"), 0),
        (1, (APPROVER, "U0OTHER"), 0),  # never negative
        (3, (), 3),
    ],
)
def test_approvals_missing(required: int, approvers: tuple[str, ...], missing: int) -> None:
    assert approvals_missing(request(approvers=approvers), required) == missing
