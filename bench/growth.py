"""A long history in the store: filings timed to their card and approvals to CreateKillTask, one
at a time, with no past requests and with many, on SQLite and on PostgreSQL; and the store calls
behind a click, a filing and each tick, timed against the same databases."""

from __future__ import annotations

from sqlalchemy import text

from bench.config import CHANNEL, REQUESTER
from bench.harness import Harness, log
from bench.latency import time_approvals, time_cards
from bench.report import ms
from bench.results import History
from bench.seed import Database, store_timings


def measure(h: Harness) -> None:
    kinds = ["SQLite"] + (["PostgreSQL"] if h.postgres else [])
    for kind in kinds:
        for past in h.k.growth:
            db = (
                Database.sqlite(h.work, f"growth{past}")
                if kind == "SQLite"
                else Database.postgres(h.postgres or "")
            )
            try:
                one_size(h, kind, past, db)
            finally:
                db.drop()


def one_size(h: Harness, kind: str, past: int, db: Database) -> None:
    log(f"growth: {kind} with {past:,} past requests")
    n = h.k.growth_samples
    db.create_schema()
    db.seed_past(past)
    pending = db.seed_pending(n + 1, CHANNEL, REQUESTER, "g")
    if db.schema:
        engine = db.engine()
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))  # as autovacuum would have by now
        engine.dispose()
    queries = store_timings(db.url, pending[-1])
    bot = h.start_bot(db, f"{kind}, {past:,} past requests")
    cards = time_cards(h, bot, n, f"{kind} {past:,}: command to card")
    cloud = time_approvals(h, bot, pending[:n], f"{kind} {past:,}: approve to cloud")
    for timed in (cards, cloud):
        h.results.errors.append((timed.what, timed.errors, 0))
    h.results.history.append(History(kind, past, queries, cards, cloud))
    log(f"growth {kind} {past:,}: card p50 {ms(cards.pct(50))}, cloud p50 {ms(cloud.pct(50))} ms")
    h.finish(bot, f"{kind}, {past:,} past requests", graceful=True)
    h.st.reset()
