"""The service on a real SQLite store, with hand-written fakes for Slack and DBbrain and a clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import event

from bot.clock import Clock as BotClock
from bot.cloud import CloudError, CloudResult, KillStage, SessionList
from bot.killtask import KillTaskSpec
from bot.outcomes import Announcement, CardPost, Outcome
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
    reads_busy: bool = False  # every read slot is taken by previews

    def create_kill_task(self, spec: KillTaskSpec) -> CloudResult:
        if self.fail_with:
            raise self.fail_with
        self.created.append(spec)
        return CloudResult(f"req-{len(self.created)}")

    def cancel_kill_task(self, instance_id: str, product: str) -> CloudResult:
        self.cancelled.append((instance_id, product))
        return CloudResult("req-cancel")

    def list_sessions(self, instance_id: str, product: str, filters: dict, limit: int, wait=True):  # type: ignore[no-untyped-def]
        if self.reads_busy and not wait:
            raise CloudError("ReadBudgetInUse", "busy", action="DescribeMySqlProcessList")
        return SessionList(rows=list(self.sessions), request_id="req-list")

    def diag_events(self, instance_id: str, product: str, start: str, end: str) -> list[dict]:
        return []

    def prepare_kill(self, instance_id: str, product: str, threads: list[int]) -> KillStage:
        return KillStage(tuple(threads), "req-prepare", sql_exec_id=f"x-{threads[0]}")

    def commit_kill(self, instance_id: str, product: str, sql_exec_id: str) -> KillStage:
        first = int(sql_exec_id.removeprefix("x-"))
        doomed = [r for r in self.sessions if int(r["ID"]) >= first][:100]
        self.sessions = [r for r in self.sessions if r not in doomed]
        return KillStage(tuple(int(r["ID"]) for r in doomed), "req-commit")


@dataclass
class FakeNotifier:
    cards: dict[int, KillRequest] = field(default_factory=dict)
    replies: list[tuple[int, Announcement]] = field(default_factory=list)
    directs: list[tuple[int, Announcement]] = field(default_factory=list)
    slack_down: bool = False
    posts: int = 0
    summaries: list[tuple] = field(default_factory=list)

    def post_card(self, request: KillRequest) -> CardPost:
        if self.slack_down:
            return CardPost(error="internal_error", unknown=True)
        self.posts += 1
        self.cards[request.id] = request
        return CardPost(ts=f"ts-{request.id}")

    def find_card(self, request: KillRequest) -> CardPost:
        if self.slack_down:
            return CardPost(unknown=True)
        return CardPost(ts=f"ts-{request.id}" if request.id in self.cards else None)

    def update_card(self, request: KillRequest) -> bool:
        if self.slack_down:
            return False
        self.cards[request.id] = request
        return True

    def announce(self, request: KillRequest, news: Announcement) -> bool:
        self.replies.append((request.id, news))
        return not self.slack_down

    def post_summary(self, request: KillRequest, summary, chart: bytes | None) -> None:
        self.summaries.append((request.id, summary, chart))

    def direct(self, request: KillRequest, news: Announcement) -> None:
        self.directs.append((request.id, news))


class NoGroups:
    def groups_of(self, user_id: str, groups: frozenset[str]) -> frozenset[str]:
        return frozenset()

    def unanswered(self, groups: frozenset[str]) -> frozenset[str]:
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


@dataclass
class World:
    service: KillTaskService
    store: Store
    cloud: FakeCloud
    notifier: FakeNotifier
    clock: Clock
    ticks: BotClock

    def file(self, instance: str = "cdb-abc123", user: str = "U0REQ") -> KillRequest:
        """File as the handlers do: the quick part, then the slow part after the ack."""
        filed = self.service.file(user, CHANNEL, spec(instance))
        assert filed.ok and filed.request is not None, filed.message
        request = self.service.publish(filed.request).request
        self.service.follow_filing(request)
        return self.store.get(request.id) or request

    def approve(self, user: str, request_id: int) -> Outcome:
        decided = self.service.approve(user, request_id, CHANNEL, f"ts-{request_id}")
        return self.service.carry_out(decided, user) or decided

    def tick(self) -> None:
        self.ticks.beat()
        self.ticks.tick()


@pytest.fixture
def world(tmp_path: Path) -> World:
    clock = Clock()
    store = Store(make_engine(f"sqlite:///{tmp_path / 'k.db'}"), clock=clock)
    store.create_schema()
    cloud, notifier = FakeCloud(), FakeNotifier()
    service = KillTaskService(
        store, cloud, parse_policy(POLICY), notifier, NoGroups(), clock=clock, process_id="me"
    )
    ticks = BotClock(service, heartbeat_grace=15, starting_timeout=60, card_claim_timeout=30)
    return World(service, store, cloud, notifier, clock, ticks)


def spec(instance: str = "cdb-abc123", **kw: object) -> KillTaskSpec:
    return KillTaskSpec(instance_id=instance, duration=600, user="app", **kw)  # type: ignore[arg-type]


def test_two_distinct_approvers_are_needed(world: World) -> None:
    request = world.file()
    first = world.approve("U0A1", request.id)
    assert first.ok and "1 more needed" in first.message
    again = world.approve("U0A1", request.id)
    assert not again.ok and "already approved" in again.message
    assert world.cloud.created == []
    second = world.approve("U0A2", request.id)
    assert second.ok and second.request.state is State.RUNNING
    assert len(world.cloud.created) == 1
    assert world.store.get(request.id).approvers == ("U0A1", "U0A2")
    late = world.approve("U0A3", request.id)
    assert not late.ok and "already running" in late.message
    assert len(world.cloud.created) == 1


def test_expiry_happens_once_and_blocks_approval(world: World) -> None:
    request = world.file()
    world.clock.now += 10 * 60
    world.tick()
    world.tick()
    assert world.store.get(request.id).state is State.EXPIRED
    assert [n.what for _, n in world.notifier.replies] == ["expired"]
    assert not world.approve("U0A1", request.id).ok
    assert world.cloud.created == []


def test_fractions_of_a_minute_expire_requests(world: World) -> None:
    world.service.policy = parse_policy({**POLICY, "approval": {"expires_after_minutes": 0.05}})
    request = world.file()
    assert request.expires_at == pytest.approx(world.clock.now + 3)
    world.clock.now += 3
    world.tick()
    assert world.store.get(request.id).state is State.EXPIRED


def test_finished_after_duration(world: World) -> None:
    world.service.policy = parse_policy({**POLICY, "approval": {"required": 1}})
    request = world.file()
    assert world.approve("U0A1", request.id).request.state is State.RUNNING
    world.clock.now += 599
    world.tick()
    assert world.store.get(request.id).state is State.RUNNING
    world.clock.now += 1
    world.tick()
    assert world.store.get(request.id).state is State.FINISHED


def test_failed_and_unknown_outcomes(world: World) -> None:
    world.service.policy = parse_policy({**POLICY, "approval": {"required": 1}})
    world.cloud.fail_with = CloudError("InvalidParameterValue", "Host bad", request_id="r-9")
    failed = world.approve("U0A1", world.file().id)
    assert failed.request.state is State.FAILED
    assert failed.request.cloud_request_id == "r-9" and "Host bad" in failed.request.error_message
    world.cloud.fail_with = CloudError("ClientNetworkError", "timed out", outcome_unknown=True)
    other = world.file("cdb-other1")
    unknown = world.approve("U0A1", other.id)
    assert unknown.request.state is State.UNKNOWN
    # an unknown outcome blocks new requests on that instance until someone stops it
    assert not world.service.file("U0REQ", CHANNEL, spec("cdb-other1")).ok
    stopped = world.service.stop("U0A1", other.id, CHANNEL, f"ts-{other.id}")
    assert stopped.ok and stopped.request.state is State.STOPPED
    assert world.cloud.cancelled == [("cdb-other1", "mysql")]


def test_lost_start_becomes_unknown_and_is_never_resent(world: World) -> None:
    request = world.file()
    world.store.move(request.id, State.APPROVED, decided_by="U0A1", decided_at=world.clock.now)
    world.store.move(request.id, State.STARTING, owner="gone")
    world.clock.now += 61
    world.tick()
    assert world.store.get(request.id).state is State.UNKNOWN
    assert world.cloud.created == []


def test_an_approval_whose_process_died_is_started_once_by_the_clock(world: World) -> None:
    world.service.policy = parse_policy({**POLICY, "approval": {"required": 1}})
    request = world.file()
    # the quick part ran in a process that died before the slow part
    world.store.heartbeat("dead-replica")
    world.service.process_id = "dead-replica"
    decided = world.service.approve("U0A1", request.id, CHANNEL, f"ts-{request.id}")
    assert decided.ok and decided.request.state is State.APPROVED
    world.service.process_id = "me"
    world.tick()  # the approving process still beats in its grace period: wait
    assert world.cloud.created == []
    world.clock.now += 16
    world.tick()
    world.tick()
    assert world.store.get(request.id).state is State.RUNNING
    assert len(world.cloud.created) == 1


def test_a_filing_whose_process_died_gets_one_card_and_its_preview(world: World) -> None:
    world.store.heartbeat("dead-replica")
    world.service.process_id = "dead-replica"
    filed = world.service.file("U0REQ", CHANNEL, spec())  # the quick part only
    world.service.process_id = "me"
    world.clock.now += 16
    world.tick()
    request = world.store.get(filed.request.id)
    assert request.message_ts == f"ts-{request.id}" and request.preview is not None
    assert world.notifier.posts == 1


def test_a_card_post_that_may_have_landed_is_found_not_posted_again(world: World) -> None:
    world.notifier.slack_down = True
    request = world.file()  # unanswered: maybe posted
    world.notifier.slack_down = False
    world.notifier.cards[request.id] = request  # it did land
    world.clock.now += 31
    world.tick()
    assert world.store.get(request.id).message_ts == f"ts-{request.id}"
    assert world.notifier.posts == 0


def test_cards_catch_up_when_slack_comes_back(world: World) -> None:
    request = world.file()
    world.notifier.slack_down = True
    world.approve("U0A1", request.id)
    assert world.notifier.cards[request.id].approvers == ()
    world.notifier.slack_down = False
    world.tick()
    assert world.notifier.cards[request.id].approvers == ("U0A1",)
    assert world.store.cards_behind() == []


def test_card_that_slack_refused_is_posted_later_once(world: World) -> None:
    world.notifier.slack_down = True
    request = world.file()
    world.notifier.slack_down = False
    world.tick()  # the filing process's claim is still fresh: nobody else posts yet
    assert request.id not in world.notifier.cards
    world.clock.now += 31
    world.tick()
    world.tick()
    assert world.notifier.cards[request.id].id == request.id
    assert world.store.get(request.id).message_ts == f"ts-{request.id}"
    assert world.store.unposted_cards(world.clock.now + 100, world.clock.now) == []
    assert world.notifier.posts == 1


def test_one_approval_takes_few_transactions(world: World) -> None:
    """Counted before the rework: 26 statements in 18 transactions; now far fewer."""
    world.service.policy = parse_policy({**POLICY, "approval": {"required": 1}})
    request = world.file()
    counts = {"statements": 0, "transactions": 0}

    def count(name: str):  # type: ignore[no-untyped-def]
        return lambda *_args: counts.__setitem__(name, counts[name] + 1)

    event.listen(world.store.engine, "before_cursor_execute", count("statements"))
    event.listen(world.store.engine, "begin", count("transactions"))
    assert world.approve("U0A1", request.id).request.state is State.RUNNING
    print(f"one approval: {counts}")
    assert counts["transactions"] <= 10 and counts["statements"] <= 24


def test_a_start_never_waits_for_a_read_slot(world: World) -> None:
    world.service.policy = parse_policy({**POLICY, "approval": {"required": 1}})
    request = world.file()
    world.clock.now += 31  # the card's preview is older than a sample period: read if free
    world.cloud.reads_busy = True
    started = world.approve("U0A1", request.id)
    assert started.request.state is State.RUNNING and len(world.cloud.created) == 1
    news = [n for _, n in world.notifier.replies if n.what == "started"]
    assert len(news) == 1 and news[0].preview is None  # "could not be read just before"
    assert world.store.get(request.id).preview is not None  # the filing's preview stays


def test_a_fresh_preview_is_the_start_s_first_sample_and_nothing_is_read(world: World) -> None:
    world.service.policy = parse_policy({**POLICY, "approval": {"required": 1}})
    world.cloud.sessions = [{"ID": "7", "User": "app", "Command": "Query", "Time": "3"}]
    request = world.file()
    world.cloud.sessions = []  # were it read again now, nothing would match
    world.clock.now += 29  # within one sample period (30 s)
    world.approve("U0A1", request.id)
    (news,) = [n for _, n in world.notifier.replies if n.what == "started"]
    assert news.preview is not None and news.preview.matched == 1
    assert world.store.get(request.id).effect["start"] == 1


def test_an_old_preview_is_read_again_before_the_start(world: World) -> None:
    world.service.policy = parse_policy({**POLICY, "approval": {"required": 1}})
    world.cloud.sessions = [{"ID": "7", "User": "app", "Command": "Query", "Time": "3"}]
    request = world.file()
    world.cloud.sessions = []
    world.clock.now += 31
    world.approve("U0A1", request.id)
    (news,) = [n for _, n in world.notifier.replies if n.what == "started"]
    assert news.preview is not None and news.preview.matched == 0
    assert world.store.get(request.id).effect["start"] == 0


NOTIFYING = {**POLICY, "approval": {**POLICY["approval"], "notify": ["S0DBA"]}}


def test_a_card_posted_later_by_the_clock_still_mentions_notify(world: World) -> None:
    world.service.policy = parse_policy(NOTIFYING)
    world.notifier.slack_down = True
    request = world.file()
    world.notifier.slack_down = False
    world.clock.now += 31
    world.tick()
    world.tick()
    filed = [n for rid, n in world.notifier.replies if rid == request.id and n.what == "filed"]
    assert len(filed) == 1 and filed[0].mentions == ("S0DBA",) and filed[0].missing == 2


def test_a_reminder_slack_did_not_take_is_audited_failed_and_sent_again(world: World) -> None:
    approval = {**NOTIFYING["approval"], "remind_after_minutes": 1, "expires_after_minutes": 10}
    world.service.policy = parse_policy({**POLICY, "approval": approval})
    pending = world.file("cdb-one")
    world.clock.now += 61
    world.notifier.slack_down = True
    world.tick()
    world.notifier.slack_down = False
    world.tick()
    world.tick()
    tried = [n.what for rid, n in world.notifier.replies if rid == pending.id]
    assert tried == ["filed", "reminder", "reminder"]  # once lost, once posted, then no more
    said = [
        (e["action"], e["outcome"]) for e in world.store.audit_rows() if e["action"] == "reminder"
    ]
    assert said == [("reminder", "sent"), ("reminder", "failed"), ("reminder", "sent")]


def test_reminder_and_escalation_once_each_and_only_while_pending(world: World) -> None:
    approval = {**NOTIFYING["approval"], "remind_after_minutes": 1, "escalate_after_minutes": 2,
                "escalate_to": ["U0BOSS"], "expires_after_minutes": 10}  # fmt: skip
    world.service.policy = parse_policy({**POLICY, "approval": approval})
    pending, decided = world.file("cdb-one"), world.file("cdb-two")
    world.approve("U0A1", decided.id)
    world.approve("U0A2", decided.id)
    for _ in range(3):
        world.clock.now += 61
        world.tick()
    news = [(rid, n.what, n.mentions) for rid, n in world.notifier.replies if rid == pending.id]
    assert [w for _, w, _ in news] == ["filed", "reminder", "escalation"]
    assert news[2][2] == ("U0BOSS",)
    assert not [n for rid, n in world.notifier.replies if rid == decided.id and n.what in
                ("reminder", "escalation")]  # fmt: skip
    sent = [
        (e["action"], e["request_id"]) for e in world.store.audit_rows() if e["outcome"] == "sent"
    ]
    assert sent == [("reminder", pending.id), ("escalation", pending.id)]
