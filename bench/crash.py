"""Nothing a person was told about is lost: filings and approvals are acked, the bot is killed
(SIGKILL of its process group) right after, restarted on the same database, round after round;
then the last restart must finish what every kill left."""

from __future__ import annotations

import random
import time
from collections import Counter

from bench import load
from bench.config import CHANNEL, REQUESTER
from bench.harness import HOST, Harness, log
from bench.results import Crash
from bench.seed import Database, Pending

KILL_WITHIN = 0.040  # the SIGKILL lands 0–40 ms after the round's last ack, at random
TICK = "1"  # TICK_SECONDS: the clock that finishes what a dead process left runs every second


def measure(h: Harness) -> None:
    k = h.k
    log(f"crash: {k.crash_rounds} rounds of {k.crash_batch} actions, SIGKILL after the acks")
    db = Database.sqlite(h.work, "crash")
    db.create_schema()
    pending = db.seed_pending(k.crash_rounds * k.crash_batch, CHANNEL, REQUESTER, "k")
    crash = Crash()
    h.results.crash = crash
    h.st.reset()
    dice = random.Random(9)
    for r in range(k.crash_rounds):
        label = "SQLite, after SIGKILL" if r else "SQLite, existing schema"
        bot = h.start_bot(db, label, TICK_SECONDS=TICK)
        batch = [action(h, crash, pending) for _ in range(k.crash_batch)]
        result = load.run(HOST, bot.port, batch, len(batch))
        h.account(f"crash round {r + 1}", result)
        crash.not_acked += result.errors + result.non_200
        acked = [result.answered_at[p.tag] for p in batch if p.tag in result.answered_at]
        if acked:
            time.sleep(max(0.0, max(acked) + dice.uniform(0, KILL_WITHIN) - time.time()))
        killed = time.time()
        bot.kill()
        crash.kill_after_ack += [killed - at for at in acked]
        crash.rounds += 1
        h.scan_log(bot, f"crash round {r + 1}")
    bot = h.start_bot(db, "SQLite, after the last SIGKILL", TICK_SECONDS=TICK)
    account(h, crash, db, time.monotonic())
    h.finish(bot, "after the crash rounds", graceful=True)
    h.st.reset()


def action(h: Harness, crash: Crash, pending: list[Pending]) -> load.Prepared:
    """Filings and approvals in turn; each remembered by its instance."""
    done = len(crash.filings) + len(crash.approvals)
    if done % 2 == 0:
        item = h.commands(1)[0]
        crash.filings.append(item.tag)
        return item
    p = pending[len(crash.approvals)]
    crash.approvals.append(p.instance)
    return h.clicks([p])[0]


def account(h: Harness, crash: Crash, db: Database, began: float) -> None:
    """Wait (at most BENCH_CRASH_WAIT) until every filing has its card and every approval has
    started or become "outcome unknown"; then count what is still missing, and doubles."""
    deadline = began + h.k.crash_wait
    while True:
        cards = h.st.cards()
        carded = {c.instance for c in cards}
        calls = h.st.cloud_calls()
        created = {c.instance for c in calls if c.action == "CreateKillTask"}
        states = db.states(crash.approvals)
        crash.cards_missing = [i for i in crash.filings if i not in carded]
        crash.approvals_lost = [
            i for i in crash.approvals if i not in created and states.get(i) != "unknown"
        ]
        if not crash.cards_missing and not crash.approvals_lost:
            crash.recovered_in = time.monotonic() - began
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    crash.states = Counter(states.get(i, "missing") for i in crash.approvals)
    crash.started = sum(i in created for i in crash.approvals)
    crash.unknown = sum(i not in created and states.get(i) == "unknown" for i in crash.approvals)
    per_request = Counter(c.request_id for c in cards)
    crash.duplicate_cards = sum(n > 1 for n in per_request.values())
    per_instance = Counter(c.instance for c in calls if c.action == "CreateKillTask")
    crash.duplicate_creates = sum(n > 1 for n in per_instance.values())
    log(
        f"crash: {crash.lost} lost of {len(crash.filings) + len(crash.approvals)}, "
        f"states {dict(crash.states)}"
    )
