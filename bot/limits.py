"""The client-side rate limit on DBbrain calls: DBbrain allows 20 requests per second per
action, and stops and starts must never wait behind reads."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

RATE_PER_SECOND = 20
# The window is a little longer than DBbrain's second: calls granted a second apart can still
# arrive closer together after network jitter (measured: 21-22 in a second without it).
RATE_WINDOW = 1.2


class RateLimiter:
    """At most `rate` calls in any window (a sliding window, not a bucket, so a burst at a
    window's edge cannot double the rate DBbrain sees), of which reads may take at most
    `read_rate`: the rest of every window stays free for stops and starts, so a flood of
    previews, refreshes and samples never delays a CancelKillTask or a CreateKillTask."""

    def __init__(
        self,
        rate: int = RATE_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
        window: float = RATE_WINDOW,
        read_rate: int = 14,  # so 6 of every 20 slots are kept for stops and starts
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not 0 < read_rate <= rate:
            raise ValueError("read_rate must be from 1 to rate")
        self.rate = rate
        self.read_rate = read_rate
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()  # every call granted in the window
        self._reads: deque[float] = deque()  # the reads among them
        self._lock = threading.Lock()

    def acquire(self, urgent: bool = False, wait: bool = True) -> bool:
        """Wait for a slot. An urgent call (a stop or a start) may take any free slot; a read
        waits, never fails, while reads already hold their share of the window. With
        `wait=False`, take a slot only if one is free now (False otherwise)."""
        while True:
            with self._lock:
                now = self._clock()
                for sent in (self._sent, self._reads):
                    while sent and now - sent[0] >= self.window:
                        sent.popleft()
                # The oldest grant that must leave the window before this call may go.
                blockers = []
                if len(self._sent) >= self.rate:
                    blockers.append(self._sent[0])
                if not urgent and len(self._reads) >= self.read_rate:
                    blockers.append(self._reads[0])
                if not blockers:
                    self._sent.append(now)
                    if not urgent:
                        self._reads.append(now)
                    return True
                if not wait:
                    return False
                pause = max(blockers) + self.window - now
            self._sleep(max(pause, 0.001))


class Limiter(Protocol):
    def acquire(self, urgent: bool = False, wait: bool = True) -> bool: ...


class AllLimits:
    """Wait for every limit in turn: this process's own first (cheap), then the shared one."""

    def __init__(self, *limiters: Limiter):
        self.limiters = limiters

    def acquire(self, urgent: bool = False, wait: bool = True) -> bool:
        # Without waiting, a slot taken here may go unused when the shared limit is full: a
        # little under the rate, never over it.
        return all(limiter.acquire(urgent, wait) for limiter in self.limiters)
