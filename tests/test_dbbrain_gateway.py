"""The real gateway (bot.dbbrain) with the real Tencent SDK against the local DBbrain emulator.

What matters most: a kill task is never created twice, and a call that may have reached DBbrain
is never sent again on its own.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.cloud import CloudError
from bot.dbbrain import DbbrainGateway, RateLimiter, split_endpoint
from bot.killtask import KillTaskSpec
from bot.migrate import upgrade
from bot.store import SharedRateLimit, cloud_calls, make_engine
from standins.dbbrain import DbbrainEmulator

SECRET_ID = "AKIDGATEWAYTEST"
SECRET_KEY = "gateway-test-secret-key"
MAX_ATTEMPTS = 4
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # With a proxy set, the SDK would send even 127.0.0.1 calls through it.
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _emulator() -> Iterator[DbbrainEmulator]:
    with DbbrainEmulator(keys={SECRET_ID: SECRET_KEY}) as emulator:
        yield emulator


@pytest.fixture
def emulator(_emulator: DbbrainEmulator) -> DbbrainEmulator:
    _emulator.reset()
    return _emulator


def gateway(endpoint: str, secret_key: str = SECRET_KEY, **options: object) -> DbbrainGateway:
    """The real gateway; no back-off sleeps and a short timeout keep the tests fast."""
    options = {"timeout": 2, "max_attempts": MAX_ATTEMPTS, "sleep": lambda s: None, **options}
    return DbbrainGateway(SECRET_ID, secret_key, endpoint=endpoint, **options)  # type: ignore[arg-type]


class CountingLimiter(RateLimiter):
    """Counts the calls the gateway tries to send (each passes the limiter first)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.urgent: list[bool] = []

    def acquire(self, urgent: bool = False, wait: bool = True) -> bool:
        self.count += 1
        self.urgent.append(urgent)
        return super().acquire(urgent, wait)


def new_spec(**fields: object) -> KillTaskSpec:
    return KillTaskSpec(instance_id=f"cdb-{uuid.uuid4().hex[:10]}", duration=600, **fields)


def cloud_error(call: Callable[[], object]) -> CloudError:
    with pytest.raises(CloudError) as info:
        call()
    return info.value


# ---------------------------------------------------------------- success


def test_create_sends_exactly_the_specs_params(emulator: DbbrainEmulator) -> None:
    spec = new_spec(
        host="10.0.0.5",
        db=("orders", "billing"),
        command=("Query", "Sleep"),
        info="SELECT * FROM orders",
        user="app",
        time=30,
        reason="session storm",  # ours, not DBbrain's: must not be sent
    )

    result = gateway(emulator.endpoint).create_kill_task(spec)

    (call,) = emulator.calls_of("CreateKillTask")
    assert call.params == {
        "InstanceId": spec.instance_id,
        "Duration": 600,
        "Product": "mysql",
        "Host": "10.0.0.5",
        "DB": "orders,billing",
        "Command": "Query,Sleep",
        "Info": "SELECT * FROM orders",
        "User": "app",
        "Time": 30,
    }
    assert call.params == spec.cloud_params()
    assert call.secret_id == SECRET_ID
    assert result.request_id == call.request_id
    assert result.attempts == 1
    assert emulator.active_task(spec.instance_id) is not None


def test_cancel_stops_the_active_task(emulator: DbbrainEmulator) -> None:
    spec = new_spec(user="app")
    gw = gateway(emulator.endpoint)
    gw.create_kill_task(spec)

    result = gw.cancel_kill_task(spec.instance_id, "mysql")

    (call,) = emulator.calls_of("CancelKillTask")
    assert call.params == {"InstanceId": spec.instance_id, "Product": "mysql"}
    assert call.effect == "cancelled"
    assert result.request_id == call.request_id
    assert emulator.active_task(spec.instance_id) is None


def test_stops_and_starts_ask_the_limiter_for_an_urgent_slot(emulator: DbbrainEmulator) -> None:
    """Only reads are held to their share of the rate; a stop or a start may take any slot."""
    spec = new_spec(user="app")
    limiter = CountingLimiter()
    gw = gateway(emulator.endpoint, limiter=limiter)

    gw.list_sessions(spec.instance_id, "mysql", {}, 10)
    gw.create_kill_task(spec)
    gw.cancel_kill_task(spec.instance_id, "mysql")

    assert limiter.urgent == [False, True, True]


# ---------------------------------------------------------------- throttling


@pytest.mark.parametrize("code", ["RequestLimitExceeded", "RequestLimitExceeded.UinLimitExceeded"])
def test_throttled_once_then_success_creates_exactly_one_task(
    emulator: DbbrainEmulator, code: str
) -> None:
    # The SDK's StandardRetryer would call again after the success and create a second task.
    emulator.script("CreateKillTask", {"error": code})
    spec = new_spec(user="app")

    result = gateway(emulator.endpoint).create_kill_task(spec)

    assert result.attempts == 2
    assert len(emulator.tasks) == 1
    calls = emulator.calls_of("CreateKillTask")
    assert [c.error_code for c in calls] == [code, None]
    assert result.request_id == calls[-1].request_id


def test_throttled_every_time_gives_up_after_max_attempts(emulator: DbbrainEmulator) -> None:
    emulator.script("CreateKillTask", *[{"error": "RequestLimitExceeded"}] * MAX_ATTEMPTS)
    slept: list[float] = []
    gw = gateway(emulator.endpoint, sleep=slept.append)

    error = cloud_error(lambda: gw.create_kill_task(new_spec(user="app")))

    assert error.code == "RequestLimitExceeded"
    assert error.attempts == MAX_ATTEMPTS
    assert not error.outcome_unknown
    assert error.request_id == emulator.calls_of("CreateKillTask")[-1].request_id
    assert len(emulator.calls_of("CreateKillTask")) == MAX_ATTEMPTS
    assert emulator.tasks == []
    assert len(slept) == MAX_ATTEMPTS - 1  # a back-off before every retry, none before the first
    assert all(0 <= s <= 2.0 for s in slept)
    assert "too many requests" in error.explain()


# ---------------------------------------------------------------- network failures


def test_connection_refused_is_retried_then_reported(emulator: DbbrainEmulator) -> None:
    # A bound socket that never listens: connecting to it is refused, and the port stays ours.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        limiter = CountingLimiter()
        gw = gateway(f"http://127.0.0.1:{port}", limiter=limiter)

        error = cloud_error(lambda: gw.create_kill_task(new_spec(user="app")))

    assert error.code == "ClientNetworkError"
    assert error.attempts == MAX_ATTEMPTS
    assert limiter.count == MAX_ATTEMPTS
    assert error.outcome_unknown is False  # nothing was sent, so nothing can have been created
    assert "Nothing was created" in error.explain()


def test_read_timeout_on_create_is_not_retried(emulator: DbbrainEmulator) -> None:
    emulator.script("CreateKillTask", {"delay": 3})
    spec = new_spec(user="app")
    limiter = CountingLimiter()
    gw = gateway(emulator.endpoint, timeout=1, limiter=limiter)

    error = cloud_error(lambda: gw.create_kill_task(spec))

    assert error.code == "ClientNetworkError"
    assert error.outcome_unknown is True
    assert error.attempts == 1
    assert limiter.count == 1  # sent once
    assert "cannot tell whether it took effect" in error.explain()
    # The emulator records the call once it has answered; by then the task exists, which is
    # exactly why the bot must not send the create again.
    emulator.wait_for_calls("CreateKillTask", 1)
    assert len(emulator.calls_of("CreateKillTask")) == 1
    assert emulator.active_task(spec.instance_id) is not None


def test_dropped_connection_on_create_is_not_retried(emulator: DbbrainEmulator) -> None:
    emulator.script("CreateKillTask", {"drop": True})
    spec = new_spec(user="app")

    error = cloud_error(lambda: gateway(emulator.endpoint).create_kill_task(spec))

    assert error.outcome_unknown is True
    assert error.attempts == 1
    assert len(emulator.calls_of("CreateKillTask")) == 1
    assert len(emulator.tasks) == 1  # DBbrain did the work; only the answer was lost


BAD_REPLIES = {
    "http-502": {"http_status": 502, "body": "<html>502 Bad Gateway</html>"},
    "non-json": {"raw": "<html>not json</html>"},
    "dropped": {"drop": True},
}


@pytest.mark.parametrize("reply", ["http-502", "non-json"])
def test_unreadable_reply_to_create_is_not_retried(emulator: DbbrainEmulator, reply: str) -> None:
    emulator.script("CreateKillTask", BAD_REPLIES[reply])

    error = cloud_error(lambda: gateway(emulator.endpoint).create_kill_task(new_spec(user="a")))

    assert error.outcome_unknown is True
    assert error.attempts == 1
    assert len(emulator.calls_of("CreateKillTask")) == 1
    assert "It will not be sent again" in error.explain()


@pytest.mark.parametrize("reply", sorted(BAD_REPLIES))
def test_cancel_is_retried_after_an_unreadable_reply(emulator: DbbrainEmulator, reply: str) -> None:
    spec = new_spec(user="app")
    gw = gateway(emulator.endpoint)
    gw.create_kill_task(spec)
    emulator.script("CancelKillTask", BAD_REPLIES[reply])

    result = gw.cancel_kill_task(spec.instance_id, "mysql")

    assert result.attempts == 2
    calls = emulator.calls_of("CancelKillTask")
    assert len(calls) == 2
    assert result.request_id == calls[-1].request_id
    assert emulator.active_task(spec.instance_id) is None


# ---------------------------------------------------------------- errors DBbrain answers


def test_wrong_secret_key_is_refused_and_not_retried(emulator: DbbrainEmulator) -> None:
    wrong_key = "not-the-right-secret-key"
    gw = gateway(emulator.endpoint, secret_key=wrong_key)

    error = cloud_error(lambda: gw.create_kill_task(new_spec(user="app")))

    assert error.code.startswith("AuthFailure")
    assert error.attempts == 1
    assert len(emulator.calls) == 1
    assert emulator.tasks == []
    assert "refused the bot's own cloud credentials" in error.explain()
    assert "TENCENTCLOUD_SECRET_ID" in error.explain()
    for text in (str(error), error.explain()):
        assert wrong_key not in text and SECRET_KEY not in text


@pytest.mark.parametrize(
    ("code", "message", "explained"),
    [
        ("UnauthorizedOperation", "CAM said no", "CAM policy needs dbbrain:CreateKillTask"),
        ("OperationDenied", "no strategy", "CAM policy needs dbbrain:CreateKillTask"),
        ("InvalidParameterValue", "Host is not an IP address", "Host is not an IP address"),
        ("InternalError", "backend hiccup", "InternalError: backend hiccup"),
    ],
)
def test_dbbrain_errors_are_not_retried_and_explained(
    emulator: DbbrainEmulator, code: str, message: str, explained: str
) -> None:
    emulator.script("CreateKillTask", {"error": code, "message": message})

    error = cloud_error(lambda: gateway(emulator.endpoint).create_kill_task(new_spec(user="a")))

    (call,) = emulator.calls_of("CreateKillTask")
    assert error.code == code
    assert error.request_id == call.request_id
    assert error.attempts == 1
    assert error.outcome_unknown is False
    assert emulator.tasks == []
    assert explained in error.explain()
    assert "Nothing was created" in error.explain()


def test_task_already_running_is_reported_plainly(emulator: DbbrainEmulator) -> None:
    spec = new_spec(user="app")
    gw = gateway(emulator.endpoint)
    gw.create_kill_task(spec)  # e.g. started from the console

    error = cloud_error(lambda: gw.create_kill_task(spec))

    assert error.code == "UnsupportedOperation.HasDuplicatedTask"
    assert error.attempts == 1
    assert len(emulator.calls_of("CreateKillTask")) == 2
    assert len(emulator.tasks) == 1
    assert "already runs a kill task" in error.explain()
    assert "/killtask stop" in error.explain()


# ---------------------------------------------------------------- rate limiter


class FakeClock:
    """Time that moves only when the limiter sleeps."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def limiter_on(clock: FakeClock, **options: object) -> RateLimiter:
    return RateLimiter(clock=clock, sleep=clock.sleep, **options)  # type: ignore[arg-type]


def acquire_times(
    limiter: RateLimiter, clock: FakeClock, n: int, urgent: bool = False
) -> list[float]:
    times = []
    for _ in range(n):
        limiter.acquire(urgent)
        times.append(clock.now)
    return times


def most_in_any_second(times: list[float]) -> int:
    # A window [t, t + 1) holding the most calls starts at one of the calls.
    return max(sum(1 for u in times if t <= u < t + 1.0) for t in times)


def test_rate_limiter_never_exceeds_its_rate_in_any_second(clock: FakeClock) -> None:
    limiter = limiter_on(clock, rate=20, read_rate=20, window=1.0)

    times = acquire_times(limiter, clock, 45)

    assert most_in_any_second(times) == 20
    assert times[:20] == [times[0]] * 20  # the first 20 go at once
    # ...and it waits no longer than it must: 45 calls at 20/s need just over 2 s.
    assert times[-1] - times[0] == pytest.approx(2.0, abs=0.01)


def test_rate_limiter_sliding_window_has_no_edge_burst(clock: FakeClock) -> None:
    limiter = limiter_on(clock, rate=5, read_rate=5, window=1.0)
    start = clock.now
    times = []
    for offset in (0.0, 0.2, 0.4, 0.6, 0.9):  # spread over the first second
        clock.now = start + offset
        limiter.acquire()
        times.append(clock.now)

    clock.now = start + 1.0  # a fixed window would allow 5 more at once here
    times += acquire_times(limiter, clock, 5)

    assert most_in_any_second(times) == 5
    assert times[-5:] == pytest.approx([start + o for o in (1.0, 1.2, 1.4, 1.6, 1.9)], abs=0.01)


def test_rate_limiter_lets_calls_through_again_after_a_quiet_second(clock: FakeClock) -> None:
    limiter = limiter_on(clock, rate=3, read_rate=3, window=1.0)
    acquire_times(limiter, clock, 3)
    clock.now += 1.0
    before = clock.now

    acquire_times(limiter, clock, 3)

    assert clock.now == before  # no waiting


def test_reads_take_only_their_share_and_wait_for_the_next_window(clock: FakeClock) -> None:
    limiter = limiter_on(clock, rate=20, read_rate=14, window=1.0)
    start = clock.now

    times = acquire_times(limiter, clock, 30)

    assert times[:14] == [start] * 14
    assert times[14] == pytest.approx(start + 1.0)  # waited, did not fail
    assert most_in_any_second(times) == 14


def test_a_stop_goes_at_once_when_reads_have_used_their_share(clock: FakeClock) -> None:
    limiter = limiter_on(clock, rate=20, read_rate=14, window=1.0)
    start = clock.now
    acquire_times(limiter, clock, 14)

    stops = acquire_times(limiter, clock, 6, urgent=True)

    assert stops == [start] * 6  # the six slots reads may not take
    # Only now is the window full, and a seventh stop waits like anything else.
    assert acquire_times(limiter, clock, 1, urgent=True) == [pytest.approx(start + 1.0)]


def test_urgent_calls_may_use_every_slot(clock: FakeClock) -> None:
    limiter = limiter_on(clock, rate=20, read_rate=14, window=1.0)

    times = acquire_times(limiter, clock, 45, urgent=True)

    assert most_in_any_second(times) == 20
    assert times[:20] == [times[0]] * 20


def test_read_rate_must_fit_in_the_rate() -> None:
    for read_rate in (0, 21):
        with pytest.raises(ValueError):
            RateLimiter(rate=20, read_rate=read_rate)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([0.0, 0.0, 0.01, 0.3, 1.0])), max_size=90))
def test_any_mix_keeps_both_limits_and_delays_a_stop_only_behind_other_stops(
    steps: list[tuple[bool, float]],
) -> None:
    clock = FakeClock()
    limiter = limiter_on(clock, rate=20, read_rate=14, window=1.0)
    grants: list[tuple[float, bool]] = []
    for urgent, gap in steps:
        clock.now += gap
        asked = clock.now
        limiter.acquire(urgent)
        if urgent and clock.now > asked:
            # It waited: the window it asked in was full, and reads held at most 14 of it.
            in_window = [u for t, u in grants if t > asked - 1.0]
            assert len(in_window) == 20
            assert sum(in_window) >= 6
        grants.append((clock.now, urgent))
    assert_within_limits(grants, window=1.0)


def assert_within_limits(grants: list[tuple[float, bool]], window: float) -> None:
    """No window holds more than 20 calls, nor more than 14 reads."""
    for start, _ in grants:
        in_window = [urgent for t, urgent in grants if start <= t < start + window]
        assert len(in_window) <= 20
        assert in_window.count(False) <= 14


class FrozenClock:
    """Time that stands still, so threads that must wait stay waiting, until `run` is set;
    then every sleep moves it on. Remembers the time each thread last read (its grant)."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.start = start
        self.run = threading.Event()
        self.waited: set[str] = set()  # names of the threads that had to sleep
        self._lock = threading.Lock()
        self._local = threading.local()

    def __call__(self) -> float:
        with self._lock:
            self._local.last = self.now
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waited.add(threading.current_thread().name)
            if self.run.is_set():
                self.now += seconds
        time.sleep(0 if self.run.is_set() else 0.001)

    def last_read(self) -> float:
        return self._local.last


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30  # only a hang fails this; nothing is timed
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def flood_reads_then_stop(limiters: list, clock: FrozenClock) -> list[tuple[float, bool]]:
    """Four threads flood reads over the limiters (one per replica); once every reader is
    held back, this thread sends six stops. Returns every grant as (time, urgent)."""
    grants: list[tuple[float, bool]] = []
    lock = threading.Lock()

    def take(limiter, urgent: bool) -> None:  # type: ignore[no-untyped-def]
        limiter.acquire(urgent)
        with lock:
            grants.append((clock.last_read(), urgent))

    def reader(i: int) -> None:
        for _ in range(10):
            take(limiters[i % len(limiters)], False)

    readers = [threading.Thread(target=reader, args=(i,), name=f"reader-{i}") for i in range(4)]
    for thread in readers:
        thread.start()
    try:
        wait_until(
            lambda: (
                len(grants) == 14 and all(t.name in clock.waited for t in readers if t.is_alive())
            ),
            "the readers never used up their share",
        )
        assert len(grants) == 14  # the reads' share of the window, and no more
        me = threading.current_thread().name
        for i in range(6):
            take(limiters[i % len(limiters)], True)
        assert me not in clock.waited  # no stop waited behind the reads
    finally:
        clock.run.set()
        for thread in readers:
            thread.join(30)
    assert not any(thread.is_alive() for thread in readers)
    assert len(grants) == 46
    assert grants[14:20] == [(clock.start, True)] * 6  # the stops, at once
    return grants


def test_reads_from_many_threads_never_delay_a_stop() -> None:
    clock = FrozenClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep, window=1.0)

    grants = flood_reads_then_stop([limiter], clock)

    assert_within_limits(grants, window=1.0)


def test_reads_on_two_replicas_never_delay_a_stop_sqlite(tmp_path: Path) -> None:
    shared_flood(f"sqlite:///{tmp_path / 'k.db'}")


def test_reads_on_two_replicas_never_delay_a_stop_postgresql(postgres_url: str) -> None:
    shared_flood(postgres_url)


def shared_flood(url: str) -> None:
    """Two replicas' shared limiters on one database: the same rule across processes."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        clock = FrozenClock()
        replicas = [
            SharedRateLimit(engine, window=1.0, clock=clock, sleep=clock.sleep) for _ in range(2)
        ]

        grants = flood_reads_then_stop(replicas, clock)

        assert_within_limits(grants, window=1.0)
        with engine.connect() as conn:
            stored = conn.execute(select(cloud_calls.c.at, cloud_calls.c.urgent)).all()
        assert sorted((at, bool(urgent)) for at, urgent in stored) == sorted(grants)
    finally:
        engine.dispose()


# ---------------------------------------------------------------- split_endpoint


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.0.0.1:9100", ("http", "127.0.0.1:9100")),
        ("https://dbbrain.tencentcloudapi.com", ("https", "dbbrain.tencentcloudapi.com")),
        ("https://dbbrain.tencentcloudapi.com/", ("https", "dbbrain.tencentcloudapi.com")),
        ("dbbrain.tencentcloudapi.com", ("https", "dbbrain.tencentcloudapi.com")),
        ("127.0.0.1:9100", ("https", "127.0.0.1:9100")),
    ],
)
def test_split_endpoint(endpoint: str, expected: tuple[str, str]) -> None:
    assert split_endpoint(endpoint) == expected


@pytest.mark.parametrize(
    "endpoint", ["ftp://dbbrain.tencentcloudapi.com", "https://host/v3", "http://", ""]
)
def test_split_endpoint_rejects(endpoint: str) -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        split_endpoint(endpoint)


def test_gateway_rejects_a_bad_endpoint_at_construction() -> None:
    with pytest.raises(ValueError):
        gateway("ftp://x")


def test_default_window_leaves_room_for_network_jitter(clock: FakeClock) -> None:
    """Calls granted just over a second apart may arrive closer together; the default window
    is longer than a second, so DBbrain still never sees more than 20 in one."""
    times = acquire_times(limiter_on(clock, rate=20, read_rate=20), clock, 60)
    jittered = [t + (0.15 if i % 20 == 0 else 0.0) for i, t in enumerate(times)]
    assert most_in_any_second(jittered) <= 20


def test_a_read_that_may_not_wait_is_not_sent_when_reads_have_their_share() -> None:
    """The re-read before a start: skipped, rather than queued, while previews use the budget."""
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0], sleep=lambda s: None)
    assert all(limiter.acquire(urgent=False) for _ in range(14))
    assert limiter.acquire(urgent=False, wait=False) is False
    assert limiter.acquire(urgent=True, wait=False) is True  # a start or a stop still goes
    clock[0] += 2
    assert limiter.acquire(urgent=False, wait=False) is True


def test_a_lookup_before_the_ack_never_waits_for_a_read_slot(emulator: DbbrainEmulator) -> None:
    """While previews use the reads' share, filing's instance lookup is not sent (the request
    is filed with its region unknown) rather than holding Slack's ack."""
    from bot.estate import DEFAULT_ACCOUNTS

    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0], sleep=lambda s: pytest.fail("it waited"))
    for _ in range(14):
        limiter.acquire(urgent=False)
    gw = gateway(emulator.endpoint, limiter=limiter)
    with pytest.raises(CloudError) as raised:
        gw.list_instances(DEFAULT_ACCOUNTS[0], "mysql", ["cdb-abc12345"], quick=True)
    assert raised.value.code == "ReadBudgetInUse"
    assert emulator.calls_of("DescribeDiagDBInstances") == []


def test_the_lookup_before_a_start_never_waits_behind_reads(emulator: DbbrainEmulator) -> None:
    """A request filed with its region unknown is looked up before CreateKillTask: that lookup
    is part of the start, so it takes an urgent slot while previews hold the reads' share."""
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0], sleep=lambda s: pytest.fail("it waited"))
    for _ in range(14):
        limiter.acquire(urgent=False)
    from bot.estate import DEFAULT_ACCOUNTS, Location

    looked: list[str] = []

    def locate(instance_id: str, product: str) -> Location:
        looked.append(instance_id)
        gw.list_instances(DEFAULT_ACCOUNTS[0], product, [instance_id])
        return Location(DEFAULT_ACCOUNTS[0], "ap-guangzhou")

    gw = gateway(emulator.endpoint, limiter=limiter, locate=locate)
    spec = new_spec(user="app")
    gw.create_kill_task(spec)
    assert looked == [spec.instance_id]
    assert len(emulator.calls_of("CreateKillTask")) == 1


# ---------------------------------------------------------------- answers without their data

# What the SDK returns for an error reply it did not recognise (DBBRAIN.md): no data at all.
EMPTY = {"raw": '{"Response": {"RequestId": "req-empty"}}'}


def test_a_read_answered_without_its_data_is_an_error_not_nothing(
    emulator: DbbrainEmulator,
) -> None:
    from bot.estate import DEFAULT_ACCOUNTS

    gw = gateway(emulator.endpoint)
    spec = new_spec(user="app")
    reads = {
        "DescribeMySqlProcessList": lambda: gw.list_sessions(spec.instance_id, "mysql", {}, 10),
        "DescribeDiagDBInstances": lambda: gw.list_instances(DEFAULT_ACCOUNTS[0], "mysql"),
        "DescribeDBDiagEvents": lambda: gw.diag_events(
            spec.instance_id, "mysql", "2026-11-30 00:00:00", "2026-11-30 00:10:00"
        ),
    }
    for action, read in reads.items():
        emulator.script(action, EMPTY)
        error = cloud_error(read)
        assert (error.code, error.action, error.request_id) == ("BadResponse", action, "req-empty")


def test_a_commit_answered_without_threads_is_outcome_unknown(emulator: DbbrainEmulator) -> None:
    gw = gateway(emulator.endpoint)
    emulator.script("KillMySqlThreads", EMPTY)
    error = cloud_error(lambda: gw.commit_kill("cdb-abc12345", "mysql", "exec-1"))
    assert error.code == "BadResponse" and error.outcome_unknown is True
    assert len(emulator.calls_of("KillMySqlThreads")) == 1  # never sent again


def test_a_database_outage_in_the_shared_limiter_sends_nothing_and_says_so(
    emulator: DbbrainEmulator, tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'limit.db'}")  # no schema: every acquire fails
    gw = gateway(emulator.endpoint, limiter=SharedRateLimit(engine))
    error = cloud_error(lambda: gw.create_kill_task(new_spec(user="app")))
    assert error.code == "StoreUnavailable" and error.outcome_unknown is False
    assert "nothing was sent to DBbrain" in error.explain()
    assert emulator.calls_of("CreateKillTask") == []
