"""The service on a real SQLite store, with hand-written fakes for Slack and DBbrain and a clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.cloud import CloudError, CloudResult, SessionList
from bot.killtask import KillTaskSpec
from bot.policy import parse_policy
from bot.requests import KillRequest, State
from bot.service import KillTaskService
from bot.store import Store, make_engine

CHANNEL = "C0INCIDENT"


@dataclass
class FakeCloud:
    created: list[KillTaskSpec] = field(default_factory=list)
    cancelled: list[tuple[str, str]] = field(default_factory=list)
    fail_with: CloudError | None = None
    sessions: list[dict] = field(default_factory=list)

    def create_kill_task(self, spec: KillTaskSpec) -> CloudResult:
        if self.fail_with:
            raise self.fail_with
        self.created.append(spec)
        return CloudResult(f"req-{len(self.created)}")

    def cancel_kill_task(self, instance_id: str, product: str) -> CloudResult:
        self.cancelled.append((instance_id, product))
        return CloudResult("req-cancel")

    def list_sessions(self, instance_id: str, product: str, filters: dict, limit: int):
        return SessionList(rows=list(self.sessions), request_id="req-list")


@dataclass
class FakeNotifier:
    cards: dict[int, KillRequest] = field(default_factory=dict)
    replies: list[tuple[int, str]] = field(default_factory=list)
    slack_down: bool = False

    def post_card(self, request: KillRequest) -> str | None:
        if self.slack_down:
            return None
        self.cards[request.id] = request
        return f"ts-{request.id}"

    def update_card(self, request: KillRequest) -> bool:
        if self.slack_down:
            return False
        self.cards[request.id] = request
        return True

    def thread_reply(self, request: KillRequest, text: str) -> None:
        self.replies.append((request.id, text))


class NoGroups:
    def groups_of(self, user_id: str, groups: frozenset[str]) -> frozenset[str]:
        return frozenset()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


POLICY = {
    "approval": {"required": 2, "expires_after_minutes": 10},
    "roles": {
        "oncall": {"members": ["U0REQ"], "allow": ["request"]},
        "dba": {"members": ["U0A1", "U0A2", "U0A3"], "allow": ["request", "approve", "stop"]},
    },
}


@pytest.fixture
def world(tmp_path: Path):
    clock = Clock()
    store = Store(make_engine(f"sqlite:///{tmp_path / 'k.db'}"), clock=clock)
    store.create_schema()
    cloud, notifier = FakeCloud(), FakeNotifier()
    service = KillTaskService(
        store, cloud, parse_policy(POLICY), notifier, NoGroups(), clock=clock, starting_timeout=60
    )
    return service, store, cloud, notifier, clock


def spec(instance: str = "cdb-abc123", **kw: object) -> KillTaskSpec:
    return KillTaskSpec(instance_id=instance, duration=600, user="app", **kw)  # type: ignore[arg-type]


def test_two_distinct_approvers_are_needed(world) -> None:
    service, store, cloud, _notifier, _ = world
    request = service.file("U0REQ", CHANNEL, spec()).request
    first = service.approve("U0A1", request.id, CHANNEL, "ts-1")
    assert first.ok and "1 more needed" in first.message
    again = service.approve("U0A1", request.id, CHANNEL, "ts-1")
    assert not again.ok and "already approved" in again.message
    assert cloud.created == []
    second = service.approve("U0A2", request.id, CHANNEL, "ts-1")
    assert second.ok and second.request.state is State.RUNNING
    assert len(cloud.created) == 1
    assert store.get(request.id).approvers == ("U0A1", "U0A2")
    late = service.approve("U0A3", request.id, CHANNEL, "ts-1")
    assert not late.ok and "already running" in late.message
    assert len(cloud.created) == 1


def test_expiry_happens_once_and_blocks_approval(world) -> None:
    service, store, cloud, notifier, clock = world
    request = service.file("U0REQ", CHANNEL, spec()).request
    clock.now += 10 * 60
    service.tick()
    service.tick()
    assert store.get(request.id).state is State.EXPIRED
    assert [text for rid, text in notifier.replies if "expired" in text] == [
        "This request expired without enough approvals; nothing was killed."
    ]
    assert not service.approve("U0A1", request.id, CHANNEL).ok
    assert cloud.created == []


def test_finished_after_duration(world) -> None:
    service, store, _, _, clock = world
    service.policy = parse_policy({**POLICY, "approval": {"required": 1}})
    request = service.file("U0REQ", CHANNEL, spec()).request
    assert service.approve("U0A1", request.id, CHANNEL).request.state is State.RUNNING
    clock.now += 599
    service.tick()
    assert store.get(request.id).state is State.RUNNING
    clock.now += 1
    service.tick()
    assert store.get(request.id).state is State.FINISHED


def test_failed_and_unknown_outcomes(world) -> None:
    service, _store, cloud, _, _ = world
    service.policy = parse_policy({**POLICY, "approval": {"required": 1}})
    cloud.fail_with = CloudError("InvalidParameterValue", "Host bad", request_id="r-9")
    failed = service.approve("U0A1", service.file("U0REQ", CHANNEL, spec()).request.id, CHANNEL)
    assert failed.request.state is State.FAILED
    assert failed.request.cloud_request_id == "r-9" and "Host bad" in failed.request.error_message
    cloud.fail_with = CloudError("ClientNetworkError", "timed out", outcome_unknown=True)
    other = service.file("U0REQ", CHANNEL, spec("cdb-other1")).request
    unknown = service.approve("U0A1", other.id, CHANNEL)
    assert unknown.request.state is State.UNKNOWN
    # an unknown outcome blocks new requests on that instance until someone stops it
    assert not service.file("U0REQ", CHANNEL, spec("cdb-other1")).ok
    stopped = service.stop("U0A1", other.id, CHANNEL)
    assert stopped.ok and stopped.request.state is State.STOPPED
    assert cloud.cancelled == [("cdb-other1", "mysql")]


def test_lost_start_becomes_unknown_and_is_never_resent(world) -> None:
    service, store, cloud, _, clock = world
    request = service.file("U0REQ", CHANNEL, spec()).request
    store.move(request.id, State.STARTING, decided_by="U0A1", decided_at=clock.now)
    clock.now += 61
    service.tick()
    assert store.get(request.id).state is State.UNKNOWN
    assert cloud.created == []


def test_cards_catch_up_when_slack_comes_back(world) -> None:
    service, store, _, notifier, _ = world
    request = service.file("U0REQ", CHANNEL, spec()).request
    notifier.slack_down = True
    service.approve("U0A1", request.id, CHANNEL)
    assert notifier.cards[request.id].approvers == ()
    notifier.slack_down = False
    service.tick()
    assert notifier.cards[request.id].approvers == ("U0A1",)
    assert store.cards_behind() == []


def test_card_that_slack_refused_is_posted_later_once(world) -> None:
    service, store, _, notifier, clock = world
    notifier.slack_down = True
    outcome = service.file("U0REQ", CHANNEL, spec())
    assert outcome.ok and "will appear when Slack answers" in outcome.message
    notifier.slack_down = False
    service.tick()  # the filing process's claim is still fresh: nobody else posts yet
    assert outcome.request.id not in notifier.cards
    clock.now += 31
    service.tick()
    service.tick()
    assert notifier.cards[outcome.request.id].id == outcome.request.id
    assert store.get(outcome.request.id).message_ts == f"ts-{outcome.request.id}"
    assert store.unposted_cards(claimed_before=clock.now + 100) == []
