"""The DBbrain rate limit shared by every replica on one database."""

from __future__ import annotations

import time

from sqlalchemy import (
    case,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from bot.store.base import database_errors
from bot.store.tables import cloud_calls, rate_lock, write_lock

PRUNE_EVERY = 100  # slots taken between two prunes of the calls table


class SharedRateLimit:
    """At most `rate` DBbrain calls in any second across every replica sharing the database,
    of which reads may take at most `read_rate`, so stops and starts always find a slot.

    Each acquire is one short transaction: lock the single rate_lock row, count the calls (and
    the reads among them) of the last second, and record this one if there is room. Clocks of
    replicas on different hosts should agree to well under a second (NTP), as they do for
    Slack's signatures anyway.
    """

    def __init__(  # type: ignore[no-untyped-def]
        self,
        engine: Engine,
        rate: int = 20,
        window: float = 1.0,
        clock=time.time,
        sleep=time.sleep,
        read_rate: int = 14,  # so 6 of every 20 slots are kept for stops and starts
    ):
        if not 0 < read_rate <= rate:
            raise ValueError("read_rate must be from 1 to rate")
        self.engine = engine
        self.rate = rate
        self.read_rate = read_rate
        self.window = window  # seconds; a little over 1 leaves room for network jitter
        self._clock = clock
        self._sleep = sleep
        self._taken = 0  # slots this process took (a race here only moves a prune)

    def acquire(self, urgent: bool = False, wait: bool = True) -> bool:
        """Wait for a slot; a read waits, never fails, while reads hold their share. With
        `wait=False`, take a slot only if one is free now (False otherwise)."""
        while True:
            pause = self._try(urgent)
            if pause <= 0:
                return True
            if not wait:
                return False
            self._sleep(pause)

    def _try(self, urgent: bool) -> float:
        with database_errors(), write_lock(self.engine), self.engine.begin() as conn:
            locked = conn.execute(
                update(rate_lock).where(rate_lock.c.id == 1).values(n=rate_lock.c.n + 1)
            ).rowcount
            if not locked:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(rate_lock).values(id=1, n=0))
                except IntegrityError:
                    pass
                return 0.001  # the row exists now; go round and take the lock
            now = self._clock()
            is_read = cloud_calls.c.urgent == false()
            calls, oldest, reads, oldest_read = conn.execute(
                select(
                    func.count(),
                    func.min(cloud_calls.c.at),
                    func.count(case((is_read, 1))),
                    func.min(case((is_read, cloud_calls.c.at))),
                ).where(cloud_calls.c.at > now - self.window)
            ).one()
            # The oldest call that must leave the window before this one may go.
            blockers = []
            if calls >= self.rate:
                blockers.append(oldest)
            if not urgent and reads >= self.read_rate:
                blockers.append(oldest_read)
            if not blockers:
                conn.execute(insert(cloud_calls).values(at=now, urgent=urgent))
                self._taken += 1
                if calls == 0 or self._taken % PRUNE_EVERY == 0:  # forget calls nobody counts again
                    conn.execute(cloud_calls.delete().where(cloud_calls.c.at < now - 60))
                return 0.0
            return max(max(blockers) + self.window - now, 0.001)
