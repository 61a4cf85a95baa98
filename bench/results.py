"""What each section of the benchmark measured: plain records, one kind per table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bench.load import Result, percentile


@dataclass
class Start:
    label: str
    seconds: float
    bot: bool = True  # False for the bare Bolt app


@dataclass
class Memory:
    """Peak resident set (kB) of one replica's processes, read after a load, before the stop."""

    after: str
    master: int | None
    worker: int | None
    other: int | None = None  # any further process of the replica
    bot: bool = True
    pss: int | None = None  # the processes' proportional set size, summed, when read

    @property
    def total(self) -> int:
        return sum(v or 0 for v in (self.master, self.worker, self.other))


@dataclass
class AckRun:
    """Closed loop: requests of one kind at one concurrency, the rounds pooled."""

    kind: str  # "command" or "approve"
    server: str  # "bot" or "baseline"
    result: Result
    done: str = ""  # what the bot got done behind the acks meanwhile


@dataclass
class SteadyRun:
    """Open loop: filings and Approve clicks at a steady rate each."""

    server: str
    rate: int  # per second, of each kind
    commands: Result
    clicks: Result
    card_delays: list[float] = field(default_factory=list)  # card post minus its command's ack
    cards_missing: int = 0


@dataclass
class Burst:
    size: int
    cards: int  # of them, posted in the time allowed
    last_card: float | None  # seconds from the burst's start to its last card
    acks: Result | None = None


@dataclass
class Timed:
    """Requests sent one at a time, each timed to what it caused at a stand-in."""

    what: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    acks: list[float] = field(default_factory=list)

    def pct(self, p: float) -> float:
        return percentile(self.latencies, p)


@dataclass
class Probe:
    """GETs of one health path while the bot serves a steady load."""

    path: str
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: int = 0

    def pct(self, p: float) -> float:
        return percentile(self.latencies, p)


@dataclass
class Health:
    rate: int
    load: Result
    probes: list[Probe]


@dataclass
class Crash:
    """SIGKILL right after acks, round after round, on one database; then one last restart."""

    rounds: int = 0
    filings: list[str] = field(default_factory=list)  # instances
    approvals: list[str] = field(default_factory=list)  # instances
    kill_after_ack: list[float] = field(default_factory=list)  # seconds, one per acked action
    not_acked: int = 0
    cards_missing: list[str] = field(default_factory=list)
    approvals_lost: list[str] = field(default_factory=list)
    duplicate_cards: int = 0  # requests with more than one card
    duplicate_creates: int = 0  # instances with more than one CreateKillTask
    started: int = 0  # approvals whose CreateKillTask reached the emulator
    unknown: int = 0  # approvals that became "outcome unknown" instead
    states: Counter = field(default_factory=Counter)  # of the approvals' requests, at the end
    recovered_in: float | None = None  # seconds from the last restart until all accounted for

    @property
    def lost(self) -> int:
        return len(self.cards_missing) + len(self.approvals_lost) + self.not_acked


@dataclass
class StopFlood:
    rate: int  # previews per second
    previews: Result
    timed: Timed


@dataclass
class RateRow:
    scenario: str
    approvals: int
    creates: int
    seconds: float
    per_process: dict[str, int]
    total: int
    all_calls_per_process: dict[str, int]
    all_calls_total: int
    ack_errors: int


@dataclass
class StoreGrowth:
    database: str
    step: str
    requests: int
    before: int
    after: int


@dataclass
class History:
    database: str
    past: int
    queries: dict[str, float | None]
    cards: Timed
    cloud: Timed


@dataclass
class Results:
    acks: list[AckRun] = field(default_factory=list)
    steady: list[SteadyRun] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)
    single: list[Timed] = field(default_factory=list)
    health: Health | None = None
    crash: Crash | None = None
    stop: StopFlood | None = None
    rates: list[RateRow] = field(default_factory=list)
    store_growth: list[StoreGrowth] = field(default_factory=list)
    history: list[History] = field(default_factory=list)
    starts: list[Start] = field(default_factory=list)
    memory: list[Memory] = field(default_factory=list)
    errors: list[tuple[str, int, int]] = field(default_factory=list)  # phase, errors, non-200
    notes: list[str] = field(default_factory=list)
