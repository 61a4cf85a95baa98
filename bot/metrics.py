"""Prometheus metrics (served at GET /metrics). Counting here never raises into the bot."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from bot.audit import REQUEST_OUTCOMES, AuditEntry
from bot.requests import State

REQUESTS = Counter("killtask_requests", "Kill-task requests by what happened to them", ["outcome"])
for _outcome in sorted(set(REQUEST_OUTCOMES.values())):
    REQUESTS.labels(_outcome)  # every outcome shows, at 0, from the start

DBBRAIN_CALLS = Counter(
    "killtask_dbbrain_calls", "DBbrain calls (each try) by action and result code",
    ["action", "code"],
)  # fmt: skip
DBBRAIN_SECONDS = Histogram(
    "killtask_dbbrain_call_seconds", "DBbrain call latency, each try", ["action"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)  # fmt: skip
SLACK_ERRORS = Counter("killtask_slack_errors", "Slack Web API calls that failed", ["method"])
ACK_SECONDS = Histogram(
    "killtask_ack_seconds", "From a Slack request reaching its handler to its ack",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)  # fmt: skip
RATE_WAIT_SECONDS = Histogram(
    "killtask_rate_limit_wait_seconds", "Time a DBbrain call waited for the rate limiter",
    ["kind"], buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)  # fmt: skip
TASKS = Gauge("killtask_tasks", "Open requests by state, as of the clock's last tick", ["state"])


def audited(item: AuditEntry) -> None:
    """Count a request outcome the moment its audit entry is written."""
    outcome = REQUEST_OUTCOMES.get((item.action, item.outcome))
    if outcome is not None:
        REQUESTS.labels(outcome).inc()


def dbbrain_call(action: str, code: str, seconds: float) -> None:
    DBBRAIN_CALLS.labels(action, code).inc()
    DBBRAIN_SECONDS.labels(action).observe(seconds)


def slack_error(method: str) -> None:
    SLACK_ERRORS.labels(method).inc()


def rate_wait(kind: str, seconds: float) -> None:
    RATE_WAIT_SECONDS.labels(kind).observe(seconds)


def open_counts(counts: dict[State, int]) -> None:
    for state, n in counts.items():
        TASKS.labels(state.value).set(n)


def timed_ack(ack: Callable) -> Callable:  # type: ignore[type-arg]
    """The same ack, timing how long the handler took to call it."""
    began = time.perf_counter()

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        ACK_SECONDS.observe(time.perf_counter() - began)
        return ack(*args, **kwargs)

    return timed


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
