"""One-shot kills, effect samples, lock warnings and diagnosis: the pure parts with plain
asserts, and the service on a real SQLite store with the fakes of test_service."""

from __future__ import annotations

import pytest

from bot.effect import all_samples, summarize_effect
from bot.killtask import ONCE, SpecError, build_spec, describe_duration, split_line
from bot.outcomes import Happening, KilledSession, KillResult, next_effect
from bot.policy import PolicyError, parse_policy
from bot.preview import Session, diag_events, lock_warning, summarize
from bot.requests import KillRequest, State
from bot.slack import blocks
from bot.slack.insight import effect_line, kill_result_text, trend
from tests.test_service import World, world  # noqa: F401 - the fixture

ROLES = {"a": {"members": ["U0A"], "allow": ["request"]}}
WAIT = "Waiting for table metadata lock"


def test_duration_once_in_the_one_line_form() -> None:
    line = split_line("cdb-abc123 duration=once user=app")
    spec = build_spec(line.fields)
    assert spec.duration == ONCE and spec.once and not spec.until_stopped
    assert describe_duration(ONCE) == "once"
    with pytest.raises(SpecError, match="once"):
        build_spec({"instance_id": "cdb-abc123", "duration": "sometimes"})


def test_policy_once_and_effect() -> None:
    policy = parse_policy({"roles": ROLES})
    assert (policy.once_max_sessions, policy.sample_seconds) == (500, 30.0)
    tuned = {"once": {"max_sessions": 7}, "effect": {"sample_seconds": 0.2}}
    policy = parse_policy({"roles": ROLES, **tuned})
    assert (policy.once_max_sessions, policy.sample_seconds) == (7, 0.2)
    for bad in ({"once": {"max_sessions": 0}}, {"effect": {"sample_seconds": "fast"}},
                {"effect": {"every": 3}}):  # fmt: skip
        with pytest.raises(PolicyError):
            parse_policy({"roles": ROLES, **bad})


def session(id_: str, user: str, db: str, state: str, time: int, command: str = "Query") -> Session:
    return Session(id=id_, user=user, host="10.0.0.5:1", db=db, state=state, command=command,
                   time=time)  # fmt: skip


def test_lock_warning_names_the_longest_non_waiting_session_on_that_database() -> None:
    waiters = [session(str(i), "app", "shop", WAIT, 5) for i in range(10, 14)]
    others = [
        session("2", "etl", "shop", "", 40, "Sleep"),  # the holder: idle in a transaction
        session("3", "etl", "crm", "", 900, "Sleep"),  # another database
        session("4", "system user", "shop", "", 9999, "Daemon"),
    ]
    warning = lock_warning(waiters, waiters + others)
    assert warning is not None and warning.waiting == 4 and warning.db == "shop"
    assert warning.state == WAIT and warning.holder is not None and warning.holder.id == "2"
    running = [session("20", "app", "shop", "executing", 3) for _ in range(5)]
    assert lock_warning(waiters + running, waiters + running) is None  # not most of them


def test_summary_breaks_down_by_state_and_keeps_the_lock() -> None:
    from bot.killtask import KillTaskSpec

    spec = KillTaskSpec("cdb-abc123", 600, user="app")
    rows = [{"ID": str(i), "User": "app", "DB": "shop", "State": WAIT, "Command": "Query",
             "Time": "3"} for i in range(3)]  # fmt: skip
    preview = summarize(spec, rows, read_at=1.0, limit=5000)
    assert preview.by_state == ((WAIT, 3),) and preview.lock is not None
    again = type(preview).from_dict(preview.to_dict())
    assert again == preview


def test_diagnosis_events_most_severe_first_without_healthy_ones() -> None:
    items = [
        {"Severity": 3, "DiagItem": "HighActiveSession", "StartTime": "2026-11-29 22:00:00"},
        {"Severity": 5, "DiagItem": "Healthy", "StartTime": "2026-11-29 22:01:00"},
        {"Severity": 1, "DiagItem": "OutOfMemory", "StartTime": "2026-11-29 22:02:00"},
    ]
    events = diag_events(items)
    assert [(e.level, e.name) for e in events] == [
        ("fatal", "OutOfMemory"),
        ("warning", "HighActiveSession"),
    ]


def test_trend_and_effect_line() -> None:
    assert trend([412, 200, 30, 0]) == "█▄▂▁"
    assert trend([0, 0]) == "▁▁"
    effect: dict = {}
    for at, count in enumerate([412, 200, 3]):
        effect = next_effect(effect, float(at), count, 500, False)
    assert effect["start"] == 412 and effect["peak"] == 412 and effect["now"] == 3
    request = _request(State.RUNNING, effect=effect)
    assert "*Matching sessions now 3* (412 when it started, peak 412) █▄▁ · 3 samples" in (
        effect_line(request) or ""
    )


def _request(state: State, **kw: object) -> KillRequest:
    from bot.killtask import KillTaskSpec

    duration = int(kw.pop("duration", 600))  # type: ignore[call-overload]
    return KillRequest(1, "C0INC", "U0REQ", KillTaskSpec("cdb-abc123", duration, user="app"),
                       state, 0.0, 100.0, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_a_one_shot_card_says_what_it_killed_and_has_no_stop_button() -> None:
    first = tuple(KilledSession(str(i), "<!channel>", "10.0.0.5", 9) for i in range(12))
    result = KillResult(matched=14, killed=12, first=first[:10], after=2, why="two had ended")
    request = _request(State.FINISHED, duration=ONCE, kill_result=result.to_dict())
    assert blocks.card_text(request).endswith("Killed 12 of 14 sessions")
    text = kill_result_text(result)
    assert "*Killed 12 of 14 sessions*: two had ended." in text
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text
    unknown = _request(State.UNKNOWN, duration=ONCE, error_message="x")
    assert "stop" not in str(blocks.card(unknown))


def test_summary_counts_the_first_sample_kept_on_the_request() -> None:
    effect = next_effect({}, 100.0, 40, 90, False)
    request = _request(State.STOPPED, effect=effect, started_at=100.0, stopped_at=160.0,
                       approvers=("U0A1",))  # fmt: skip
    samples = all_samples(request, [(130.0, 10, 50), (160.0, 0, 40)])
    facts = summarize_effect(request, samples, Happening.STOPPED, now=200.0)
    assert (facts.start, facts.peak, facts.end, facts.samples) == (40, 40, 0, 3)
    assert facts.ran_seconds == 60.0 and facts.approvers == ("U0A1",)


def test_service_one_shot_kills_in_batches_once(world: World) -> None:  # noqa: F811
    world.cloud.sessions = [
        {"ID": str(1000 + i), "User": "app", "Host": "10.0.0.5:1", "Command": "Query",
         "Time": "3"} for i in range(230)
    ]  # fmt: skip
    world.service.policy = parse_policy({**_POLICY, "once": {"max_sessions": 300}})
    once = build_spec({"instance_id": "cdb-abc123", "duration": "once", "user": "app"})
    filed = world.service.file("U0REQ", "C0INCIDENT", once)
    request = world.service.publish(filed.request).request
    world.approve("U0A1", request.id)
    done = world.approve("U0A2", request.id)
    assert done.request.state is State.FINISHED
    assert KillResult.from_dict(done.request.kill_result).killed == 230
    assert world.cloud.sessions == [] and world.cloud.created == []
    (rid, facts, chart), = world.notifier.summaries  # fmt: skip
    assert rid == request.id and chart is None and facts.kill.after == 0
    world.tick()
    assert world.store.get(request.id).state is State.FINISHED


_POLICY = {
    "approval": {"required": 2, "expires_after_minutes": 10},
    "roles": {
        "oncall": {"members": ["U0REQ"], "allow": ["request"]},
        "dba": {"members": ["U0A1", "U0A2", "U0A3"], "allow": ["request", "approve", "stop"]},
    },
}


def test_pillow_loads_only_when_a_chart_is_drawn() -> None:
    import json
    import subprocess
    import sys

    from tests.test_layering import ROOT, loaded_by

    assert "PIL" not in loaded_by("bot.app")
    code = (
        "import sys, json; from bot.chart import draw; png = draw([(0, 1, 2), (60, 0, 2)], 't'); "
        "print(json.dumps([png[:8].hex(), 'PIL' in sys.modules, len(png)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=True)
    magic, loaded, size = json.loads(out.stdout)
    assert (magic, loaded) == ("89504e470d0a1a0a", True) and size > 1000


def test_chart_axes_are_round_numbers_that_cover_the_data() -> None:
    from bot.chart import nice_ticks

    assert nice_ticks(6) == [0, 2, 4, 6]
    assert nice_ticks(137) == [0, 50, 100, 150]
    assert nice_ticks(1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert nice_ticks(1001)[-1] >= 1001 and len(nice_ticks(1001)) <= 7


def test_a_one_shot_cut_off_mid_kill_is_given_up_never_resent(world: World) -> None:  # noqa: F811
    world.cloud.sessions = [{"ID": "7", "User": "app", "Command": "Query", "Time": "3"}]
    commits: list[str] = []

    def crash(instance_id: str, product: str, sql_exec_id: str) -> None:
        commits.append(sql_exec_id)
        raise SystemExit("the process dies mid-Commit")

    world.cloud.commit_kill = crash  # type: ignore[method-assign]
    once = build_spec({"instance_id": "cdb-abc123", "duration": "once", "user": "app"})
    request = world.service.publish(world.service.file("U0REQ", "C0INCIDENT", once).request)
    world.approve("U0A1", request.request.id)
    with pytest.raises(SystemExit):
        world.approve("U0A2", request.request.id)
    assert world.store.get(request.request.id).state is State.STARTING
    world.clock.now += 61  # past the clock's starting_timeout
    world.tick()
    world.tick()
    given_up = world.store.get(request.request.id)
    assert given_up.state is State.UNKNOWN
    assert "KillMySqlThreads" in given_up.error_message
    assert "will not be sent again" in given_up.error_message
    assert len(commits) == 1


def test_a_sample_that_cannot_be_read_is_said_on_the_card(world: World) -> None:  # noqa: F811
    from bot.cloud import CloudError

    world.cloud.sessions = [{"ID": "7", "User": "app", "Command": "Query", "Time": "3"}]
    request = world.file()
    world.approve("U0A1", request.id)
    running = world.approve("U0A2", request.id).request
    assert running.state is State.RUNNING and running.effect["start"] == 1
    real = world.cloud.list_sessions

    def down(*args: object, **kwargs: object) -> None:
        raise CloudError("InternalError", "busy", action="DescribeMySqlProcessList")

    world.cloud.list_sessions = down  # type: ignore[method-assign]
    world.clock.now += 31
    world.tick()
    failed = world.store.get(request.id)
    assert "could not be read" in (effect_line(failed) or "")
    assert failed.effect["start"] == 1  # the numbers it had stay
    world.cloud.list_sessions = real  # type: ignore[method-assign]
    world.cloud.sessions = []
    world.clock.now += 31
    world.tick()
    again = world.store.get(request.id)
    assert "error" not in again.effect and again.effect["now"] == 0
    assert "could not be read" not in (effect_line(again) or "")


def test_the_gateway_retries_a_prepare_but_never_a_commit() -> None:
    from bot.cloud import CloudError
    from bot.dbbrain import DbbrainGateway
    from standins.dbbrain import DbbrainEmulator

    instance = "cdb-oneshot1"
    rows = [{"ID": "7", "User": "app", "Command": "Query", "Time": "3"}]
    with DbbrainEmulator(keys={"AKIDEMULATOR": "emulator-secret"}) as emu:
        emu.set_process_list(instance, rows)
        gateway = DbbrainGateway(
            "AKIDEMULATOR", "emulator-secret", endpoint=emu.endpoint, timeout=2,
            sleep=lambda _: None,
        )  # fmt: skip
        emu.script("KillMySqlThreads", {"drop": True})  # the first Prepare's answer is lost
        prepared = gateway.prepare_kill(instance, "mysql", [7])
        assert prepared.threads == (7,) and prepared.attempts == 2
        emu.script("KillMySqlThreads", {"drop": True})  # the Commit ran; its answer is lost
        with pytest.raises(CloudError) as caught:
            gateway.commit_kill(instance, "mysql", prepared.sql_exec_id or "")
        assert caught.value.outcome_unknown and caught.value.action == "KillMySqlThreads"
        commits = [c for c in emu.calls_of("KillMySqlThreads") if c.params["Stage"] == "Commit"]
        assert len(commits) == 1 and commits[0].params["RecordHistory"] is True
        assert emu.backends[instance].list() == []  # it did kill
        assert (
            gateway.diag_events(instance, "mysql", "2026-01-01 00:00:00", "2026-01-01 01:00:00")
            == []
        )
