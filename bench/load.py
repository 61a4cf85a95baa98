"""A closed-loop load generator: N threads, each with one persistent HTTP/1.1 connection.

Every request body is built and signed before the clock starts, so the client's own work per
request is one send and one read. A thread sends its next request as soon as the previous
answer is read (concurrency N = N requests in flight).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from standins.slack_client import action_body, command_body, sign

PATH = "/slack/events"


@dataclass(frozen=True)
class Prepared:
    body: bytes
    headers: dict[str, str]


def signed(secret: str, body: str) -> Prepared:
    headers = sign(secret, body) | {"Content-Length": str(len(body.encode()))}
    return Prepared(body.encode(), headers)


def command(secret: str, text: str, user: str, channel: str) -> Prepared:
    return signed(secret, command_body(text, user_id=user, channel_id=channel))


def click(secret: str, action: str, request_id: int, user: str, channel: str, ts: str) -> Prepared:
    body = action_body(action, str(request_id), user_id=user, channel_id=channel, message_ts=ts)
    return signed(secret, body)


@dataclass
class Result:
    concurrency: int
    latencies: list[float] = field(default_factory=list)  # seconds, one per answered request
    statuses: Counter = field(default_factory=Counter)
    errors: int = 0  # connection errors and timeouts
    elapsed: float = 0.0
    first_error: str | None = None
    # CPU seconds used while the run lasted, by process ("server", "stand-ins", "client"), and
    # "machine": the share of all the machine's CPUs that was busy.
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.errors

    @property
    def non_200(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    @property
    def throughput(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float:
        return percentile(self.latencies, p)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def run(host: str, port: int, prepared: Sequence[Prepared], concurrency: int) -> Result:
    """Send every prepared request, `concurrency` at a time; time each one."""
    result = Result(concurrency)
    lock = threading.Lock()
    next_index = itertools.count()
    total = len(prepared)
    threads = min(concurrency, total)
    ready = threading.Barrier(threads + 1)

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        local: list[float] = []
        statuses: Counter = Counter()
        errors = 0
        first_error: str | None = None
        with contextlib.suppress(OSError):  # else the first request tries again, counted
            conn.connect()
        ready.wait()
        while (i := next(next_index)) < total:
            item = prepared[i]
            started = time.perf_counter()
            try:
                conn.request("POST", PATH, item.body, item.headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                conn.close()  # reconnects on the next request
                continue
            local.append(time.perf_counter() - started)
            statuses[response.status] += 1
            if response.will_close:
                conn.close()
        conn.close()
        with lock:
            result.latencies.extend(local)
            result.statuses.update(statuses)
            result.errors += errors
            result.first_error = result.first_error or first_error

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    result.elapsed = time.perf_counter() - started
    return result


def merge(results: Sequence[Result]) -> Result:
    """Several runs at one concurrency as one (latencies pooled, counts and times added)."""
    merged = Result(results[0].concurrency if results else 0)
    for r in results:
        merged.latencies += r.latencies
        merged.statuses.update(r.statuses)
        merged.errors += r.errors
        merged.elapsed += r.elapsed
        merged.first_error = merged.first_error or r.first_error
        for name, value in r.cpu.items():
            weight = r.elapsed if name == "machine" else 1.0
            merged.cpu[name] = merged.cpu.get(name, 0.0) + value * weight
    if "machine" in merged.cpu and merged.elapsed:
        merged.cpu["machine"] /= merged.elapsed
    return merged
