"""Load generators: closed loop (N threads, each waits for its answer) and open loop (requests
sent on a schedule, whatever the answers), each thread with one persistent HTTP/1.1 connection.

Every request body is built and signed before the clock starts, so the client's own work per
request is one send and one read.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from standins.slack_client import action_body, command_body, sign

PATH = "/slack/events"
LATE = 0.010  # an open-loop request sent this much after its time counts as late


@dataclass(frozen=True)
class Prepared:
    body: bytes
    headers: dict[str, str]
    tag: str = ""  # e.g. the instance a command files: the answer's time is kept under it


def signed(secret: str, body: str, tag: str = "") -> Prepared:
    headers = sign(secret, body) | {"Content-Length": str(len(body.encode()))}
    return Prepared(body.encode(), headers, tag)


def command(secret: str, text: str, user: str, channel: str, tag: str = "") -> Prepared:
    return signed(secret, command_body(text, user_id=user, channel_id=channel), tag)


def click(secret: str, action: str, request_id: int, user: str, channel: str, ts: str) -> Prepared:
    body = action_body(action, str(request_id), user_id=user, channel_id=channel, message_ts=ts)
    return signed(secret, body, f"{action}:{request_id}")


@dataclass
class Result:
    concurrency: int  # closed loop: threads; open loop: 0
    latencies: list[float] = field(default_factory=list)  # seconds, one per answered request
    statuses: Counter = field(default_factory=Counter)
    errors: int = 0  # connection errors and timeouts
    elapsed: float = 0.0
    first_error: str | None = None
    began_at: float = 0.0  # time.time() when the first request could go
    answered_at: dict[str, float] = field(default_factory=dict)  # tag -> time.time() of answer
    late: int = 0  # open loop: requests sent more than LATE after their time
    # CPU seconds used while the run lasted, by process group ("bot", "stand-ins", "client"),
    # and "machine": the share of all the machine's CPUs that was busy.
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


class _Sender:
    """One thread's connection and what it saw; folded into the Result at the end."""

    def __init__(self, host: str, port: int):
        self.conn = http.client.HTTPConnection(host, port, timeout=30)
        self.part = Result(0)
        with contextlib.suppress(OSError):  # else the first request tries again, counted
            self.conn.connect()

    def send(self, item: Prepared) -> None:
        started = time.perf_counter()
        try:
            self.conn.request("POST", PATH, item.body, item.headers)
            response = self.conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.part.errors += 1
            self.part.first_error = self.part.first_error or f"{type(exc).__name__}: {exc}"
            self.conn.close()  # reconnects on the next request
            return
        self.part.latencies.append(time.perf_counter() - started)
        if item.tag:
            self.part.answered_at[item.tag] = time.time()
        self.part.statuses[response.status] += 1
        if response.will_close:
            self.conn.close()

    def fold_into(self, result: Result, lock: threading.Lock) -> None:
        self.conn.close()
        with lock:
            result.latencies += self.part.latencies
            result.statuses.update(self.part.statuses)
            result.errors += self.part.errors
            result.first_error = result.first_error or self.part.first_error
            result.answered_at |= self.part.answered_at
            result.late += self.part.late


def _drive(host: str, port: int, threads: int, result: Result, body: Callable) -> Result:
    """Start `threads` senders, release them together, run `body(sender, start)` in each."""
    lock = threading.Lock()
    ready = threading.Barrier(threads + 1)
    start = [0.0]

    def worker() -> None:
        sender = _Sender(host, port)
        ready.wait()
        body(sender, start[0])
        sender.fold_into(result, lock)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start[0] = time.perf_counter()
    result.began_at = time.time()
    ready.wait()
    for thread in pool:
        thread.join()
    result.elapsed = time.perf_counter() - start[0]
    return result


def run(host: str, port: int, prepared: Sequence[Prepared], concurrency: int) -> Result:
    """Closed loop: send every prepared request, `concurrency` at a time; time each one."""
    next_index = itertools.count()

    def body(sender: _Sender, _start: float) -> None:
        while (i := next(next_index)) < len(prepared):
            sender.send(prepared[i])

    threads = max(1, min(concurrency, len(prepared)))
    return _drive(host, port, threads, Result(concurrency), body)


def open_loop(
    host: str, port: int, schedule: Sequence[tuple[float, Prepared]], threads: int = 16
) -> Result:
    """Open loop: each request goes at its time (seconds after the start), whether or not the
    answers before it came back; `threads` connections take them in turn."""
    next_index = itertools.count()

    def body(sender: _Sender, start: float) -> None:
        while (i := next(next_index)) < len(schedule):
            at, item = schedule[i]
            wait = start + at - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif -wait > LATE:
                sender.part.late += 1
            sender.send(item)

    return _drive(host, port, max(1, threads), Result(0), body)


def merge(results: Sequence[Result]) -> Result:
    """Several runs at one concurrency as one (latencies pooled, counts and times added)."""
    merged = Result(results[0].concurrency if results else 0)
    for r in results:
        merged.latencies += r.latencies
        merged.statuses.update(r.statuses)
        merged.errors += r.errors
        merged.elapsed += r.elapsed
        merged.late += r.late
        merged.answered_at |= r.answered_at
        merged.first_error = merged.first_error or r.first_error
        for name, value in r.cpu.items():
            weight = r.elapsed if name == "machine" else 1.0
            merged.cpu[name] = merged.cpu.get(name, 0.0) + value * weight
    if "machine" in merged.cpu and merged.elapsed:
        merged.cpu["machine"] /= merged.elapsed
    return merged


def post_once(host: str, port: int, item: Prepared, timeout: float = 30) -> tuple[int, float]:
    """One request on a connection of its own: (status, time.time() when it was sent); status 0
    when it could not be sent or answered."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    sent = time.time()
    try:
        conn.request("POST", PATH, item.body, item.headers)
        response = conn.getresponse()
        response.read()
        return response.status, sent
    except (OSError, http.client.HTTPException):
        return 0, sent
    finally:
        conn.close()
