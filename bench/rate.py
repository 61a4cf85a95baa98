"""The DBbrain rate limit holds under a burst of approvals: one process on SQLite, and two
replicas on one PostgreSQL schema, each with its own CAM key. The same runs measure how much
the store grows per request."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from sqlalchemy import text

from bench import load
from bench.config import RATE_LIMIT
from bench.harness import SECRET_A, SECRET_B, Harness, log
from bench.results import RateRow, StoreGrowth
from bench.seed import Database, Pending
from standins.launch import BotProcess


def peak_per_second(times: Sequence[float]) -> int:
    """The most calls that arrived in any sliding one-second window [t, t + 1)."""
    ordered = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


def measure(h: Harness) -> None:
    log("rate limit: one process (SQLite)")
    db = Database.sqlite(h.work, "rate")
    bot = h.start_bot(db, "SQLite, new file (migrates)")
    burst(h, db, [bot], "one process, SQLite")
    h.finish(bot, "after the one-process burst", graceful=True)
    h.st.reset()
    if h.postgres is None:
        return
    log("rate limit: two replicas (PostgreSQL)")
    db = Database.postgres(h.postgres)
    try:
        db.create_schema()
        bots = [
            h.start_bot(db, "PostgreSQL, existing schema (replica A)", SECRET_A),
            h.start_bot(db, "PostgreSQL, existing schema (replica B)", SECRET_B),
        ]
        burst(h, db, bots, "two replicas, one PostgreSQL")
        for name, bot in zip("AB", bots, strict=True):
            h.finish(bot, f"replica {name}, after the two-replica burst", graceful=True)
    finally:
        h.st.reset()
        db.drop()


def burst(h: Harness, db: Database, bots: list[BotProcess], scenario: str) -> None:
    """File `rate_burst` requests (untimed), then approve them all at once, split over bots."""
    b = h.k.rate_burst
    before = db.size()
    shares = [b // len(bots) + (i < b % len(bots)) for i in range(len(bots))]
    prepared = []
    for bot, share in zip(bots, shares, strict=True):
        mine = h.commands(share)
        prepared += mine
        h.run(bot, mine, 10, f"{scenario}: filing")
    # Each filing reads a preview through the 20/s limit: allow for that, and more.
    h.filed(f"{scenario}: filing", prepared, 30 + b / RATE_LIMIT * 2)
    filed = db.size()
    h.results.store_growth.append(
        StoreGrowth(db.kind, "filed (pending, card and preview shown)", b, before, filed)
    )
    cards = [Pending(c.request_id, c.instance, c.channel, c.ts) for c in h.st.cards()]
    h.st.reset()  # count only what the approvals cause
    results: list[load.Result] = []
    parts = [cards[i :: len(bots)] for i in range(len(bots))]
    began = time.time()
    threads = [
        threading.Thread(
            target=lambda bot, part: results.append(
                h.run(bot, h.clicks(part), 50, f"{scenario}: approvals")
            ),
            args=(bot, part),
        )
        for bot, part in zip(bots, parts, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each approval makes two DBbrain calls (preview, then CreateKillTask).
    ok = h.st.wait_creates(len(cards), 60 + 2 * len(cards) / RATE_LIMIT * 2)
    h.settle(f"{scenario}: CreateKillTask", ok)
    h.results.rates.append(rate_row(h, scenario, len(cards), began, results))
    h.settle(f"{scenario}: running", wait_running(db, len(cards), 60))
    h.results.store_growth.append(
        StoreGrowth(db.kind, "approved, CreateKillTask sent, running", len(cards), filed, db.size())
    )


def rate_row(
    h: Harness, scenario: str, approvals: int, began: float, results: list[load.Result]
) -> RateRow:
    calls = h.st.cloud_calls()
    creates = [c for c in calls if c.action == "CreateKillTask"]

    def per_key(found: list) -> dict[str, int]:  # type: ignore[type-arg]
        keys = sorted({c.secret_id or "?" for c in found})
        return {
            key: peak_per_second([c.received_at for c in found if c.secret_id == key])
            for key in keys
        }

    row = RateRow(
        scenario,
        approvals,
        len(creates),
        max((c.received_at for c in creates), default=began) - began,
        per_key(creates),
        peak_per_second([c.received_at for c in creates]),
        per_key(calls),
        peak_per_second([c.received_at for c in calls]),
        sum(r.errors + r.non_200 for r in results),
    )
    log(f"{scenario}: peak {row.total}/s over {row.seconds:.1f}s")
    return row


def wait_running(db: Database, n: int, timeout: float) -> bool:
    engine = db.engine()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                running = conn.execute(
                    text("SELECT count(*) FROM kill_requests WHERE state = 'running'")
                ).scalar_one()
            if running >= n:
                return True
            time.sleep(0.2)
        return False
    finally:
        engine.dispose()
