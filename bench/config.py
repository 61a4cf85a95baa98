"""What `make bench` measures, how much of it, and the targets: every knob in one place.

Each knob has an environment variable, so a smoke run can make everything tiny:

  BENCH_REQUESTS        closed-loop requests per level and kind, ours and bare Bolt's (1000)
  BENCH_LEVELS          closed-loop concurrency levels ("1,10,50")
  BENCH_ROUNDS          rounds each level is split into, ours and bare Bolt's alternating (3)
  BENCH_WARMUP          untimed requests before each timed run (20)
  BENCH_STEADY_RATE     open loop: filings per second, and as many Approve clicks (20)
  BENCH_STEADY_SECONDS  how long the open-loop run lasts (15)
  BENCH_BURST           filings sent at once (20)
  BENCH_BURSTS          bursts, one after the other (5)
  BENCH_SAMPLES         one at a time: filings timed to their card, approvals to CreateKillTask (50)
  BENCH_HEALTH_RATE     requests per second served while /healthz and /readyz are probed (20)
  BENCH_HEALTH_SECONDS  how long the probes run (10)
  BENCH_CRASH_ROUNDS    rounds of "act, SIGKILL, restart" (50)
  BENCH_CRASH_BATCH     filings and approvals sent together before each SIGKILL (1: then every
                        SIGKILL lands 0-40 ms after its ack; with more, the acks spread out)
  BENCH_CRASH_WAIT      seconds the last restart gets to finish what the kills left (45)
  BENCH_FLOOD_RATE      /killtask preview commands per second while Stop is clicked (30)
  BENCH_STOPS           Stop clicks timed during the preview flood (5)
  BENCH_RATE_BURST      approvals sent at once in the rate-limit runs (100)
  BENCH_GROWTH          past requests in the store for the history runs ("0,100000")
  BENCH_GROWTH_SAMPLES  filings and approvals timed one at a time per history size (20)
  BENCH_POSTGRES_URL    PostgreSQL for the two-replica and history runs
                        (postgresql://postgres@127.0.0.1:5432/test); unreachable: skipped, said
  BENCH_ONLY            some of: acks, steady, burst, single, health, crash, stop, rate, growth
  BENCH_OUT             where the markdown goes (docs/benchmarks.md)
  BENCH_BASELINE_INLINE=1  bare Bolt runs its listeners inline (process_before_response), as the
                        bot does, instead of Bolt's default (a listener thread polled every 10 ms)
  BENCH_PROFILE         a folder: py-spy records the bot's worker during each timed closed-loop
                        run (py-spy must be installed; BENCH_PROFILE_IDLE=1: idle threads too)
  BENCH_KEEP=1          keep the working folder (bot logs, SQLite files) and print its path
  BENCH_STRICT=1        exit 1 when a target is missed (default: exit 0, the report says so)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from standins.launch import ROOT

SIGNING_SECRET = "bench-signing-secret-7c1e"
REQUESTER = "U0BENCHREQ"
APPROVER = "U0BENCHOK"
CHANNEL = "C0BENCH"
RATE_LIMIT = 20  # DBbrain calls per second, per process and in total
# Each approval makes two DBbrain calls (the preview read again, then CreateKillTask): one
# approval every 150 ms is 13 calls a second, so the rate limit never delays a timed one.
PACE = 0.15

# Channels left out: every channel; generous durations; one approval from someone else.
POLICY = f"""
approval:
  required: 1
  allow_self_approval: false
  expires_after_minutes: 600
roles:
  requesters:
    members: [{REQUESTER}]
    allow: [request, preview]
    max_duration: -1
  approvers:
    members: [{APPROVER}]
    allow: [request, approve, reject, stop, preview]
    max_duration: -1
"""


@dataclass(frozen=True)
class Targets:
    ack_c1_ratio: float = 1.5  # ack p99 at c=1 ÷ bare Bolt's
    steady_ratio: float = 2.0  # ack p99 at the steady rate ÷ bare Bolt's at the same rate
    card_after_ack: float = 1.0  # seconds, each card after its command's ack, steady rate
    burst_last_card: float = 1.0  # seconds, burst start to its last card
    stress_p99: float = 0.300  # seconds, closed loop at c=10 and c=50
    card_p50: float = 0.100  # seconds, command to card, one at a time
    cloud_p50: float = 0.050  # seconds, Approve click to CreateKillTask, one at a time
    probe_p99: float = 0.020  # seconds, /healthz and /readyz under load
    startup: float = 1.0  # seconds, start to ready, every start
    rss_mb: float = 120.0  # peak resident set of a replica: master + worker (+ any other)
    kill_after_ack: float = 0.050  # seconds, the SIGKILL at most this long after each ack
    stop_sent: float = 0.100  # seconds, Stop click to CancelKillTask during a preview flood


TARGETS = Targets()
PHASES = ("acks", "steady", "burst", "single", "health", "crash", "stop", "rate", "growth")
STRESS_LEVELS = (10, 50)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def env_list(name: str, default: str) -> list[int]:
    raw = os.environ.get(name) or default
    return [int(part) for part in raw.replace(" ", "").split(",") if part]


def _knob(name: str, default: int):  # type: ignore[no-untyped-def]
    return field(default_factory=lambda: env_int(name, default))


@dataclass
class Knobs:
    requests: int = _knob("BENCH_REQUESTS", 1000)
    levels: list[int] = field(default_factory=lambda: env_list("BENCH_LEVELS", "1,10,50"))
    rounds: int = _knob("BENCH_ROUNDS", 3)
    warmup: int = _knob("BENCH_WARMUP", 20)
    steady_rate: int = _knob("BENCH_STEADY_RATE", 20)
    steady_seconds: int = _knob("BENCH_STEADY_SECONDS", 15)
    burst: int = _knob("BENCH_BURST", 20)
    bursts: int = _knob("BENCH_BURSTS", 5)
    samples: int = _knob("BENCH_SAMPLES", 50)
    health_rate: int = _knob("BENCH_HEALTH_RATE", 20)
    health_seconds: int = _knob("BENCH_HEALTH_SECONDS", 10)
    crash_rounds: int = _knob("BENCH_CRASH_ROUNDS", 50)
    crash_batch: int = _knob("BENCH_CRASH_BATCH", 1)
    crash_wait: int = _knob("BENCH_CRASH_WAIT", 45)
    flood_rate: int = _knob("BENCH_FLOOD_RATE", 30)
    stops: int = _knob("BENCH_STOPS", 5)
    rate_burst: int = _knob("BENCH_RATE_BURST", 100)
    growth: list[int] = field(default_factory=lambda: env_list("BENCH_GROWTH", "0,100000"))
    growth_samples: int = _knob("BENCH_GROWTH_SAMPLES", 20)
    out: Path = field(
        default_factory=lambda: ROOT / os.environ.get("BENCH_OUT", "docs/benchmarks.md")
    )
    postgres_url: str = field(
        default_factory=lambda: (
            os.environ.get("BENCH_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
        )
    )
    only: set[str] = field(
        default_factory=lambda: set(
            (os.environ.get("BENCH_ONLY") or ",".join(PHASES)).replace(" ", "").split(",")
        )
    )
    profile: Path | None = field(
        default_factory=lambda: Path(p) if (p := os.environ.get("BENCH_PROFILE")) else None
    )
    profile_idle: bool = field(default_factory=lambda: os.environ.get("BENCH_PROFILE_IDLE") == "1")
    keep: bool = field(default_factory=lambda: os.environ.get("BENCH_KEEP") == "1")
    strict: bool = field(default_factory=lambda: os.environ.get("BENCH_STRICT") == "1")
