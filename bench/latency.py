"""What a person waits for: a filing's card and an approval's CreateKillTask, one at a time on an
idle bot; and the last card of a burst of filings sent at once."""

from __future__ import annotations

import time
from collections.abc import Sequence

from bench import load
from bench.config import CHANNEL, PACE, REQUESTER
from bench.harness import HOST, Harness, log
from bench.report import ms
from bench.results import Burst, Timed
from bench.seed import Database, Pending
from standins.launch import BotProcess

WAIT = 10.0  # seconds one filing or approval gets to show at the stand-in


def time_cards(h: Harness, bot: BotProcess, n: int, what: str = "command to card") -> Timed:
    """File one at a time; time each from the command leaving the client to its card's
    chat.postMessage arriving at the fake Slack."""
    timed = Timed(what)
    for item in h.commands(n):
        status, sent = load.post_once(HOST, bot.port, item)
        timed.acks.append(time.time() - sent)
        card = h.st.wait_cards_of([item.tag], WAIT) and h.st.card_of(item.tag)
        if status != 200 or not card:
            timed.errors += 1
            h.note(f"{what}: {'no card in time' if status == 200 else f'HTTP {status}'}")
        else:
            timed.latencies.append(card.at - sent)
        time.sleep(max(0.0, sent + PACE - time.time()))
    return timed


def time_approvals(
    h: Harness, bot: BotProcess, pending: Sequence[Pending], what: str = "approve to cloud"
) -> Timed:
    """Approve one at a time; time each click to its CreateKillTask's arrival at the emulator.
    One every PACE seconds at most, so the DBbrain rate limit never delays one."""
    timed = Timed(what)
    for p, item in zip(pending, h.clicks(pending), strict=True):
        status, sent = load.post_once(HOST, bot.port, item)
        timed.acks.append(time.time() - sent)
        call = h.st.wait_create_of(p.instance, WAIT) if status == 200 else None
        if call is None:
            timed.errors += 1
            h.note(f"{what}: {'no CreateKillTask in time' if status == 200 else f'HTTP {status}'}")
        else:
            timed.latencies.append(call.received_at - sent)
        time.sleep(max(0.0, sent + PACE - time.time()))
    return timed


def single(h: Harness) -> None:
    log("one at a time: command to card, approval to CreateKillTask")
    n = h.k.samples
    db = Database.sqlite(h.work, "single")
    db.create_schema()
    pending = db.seed_pending(n + h.k.warmup, CHANNEL, REQUESTER, "c")
    bot = h.start_bot(db, "SQLite, existing schema")
    time_cards(h, bot, h.k.warmup, "warm-up")
    time_approvals(h, bot, pending[: h.k.warmup], "warm-up")
    h.results.notes[:] = [t for t in h.results.notes if not t.startswith("warm-up")]
    timings = (
        lambda: time_cards(h, bot, n),
        lambda: time_approvals(h, bot, pending[h.k.warmup :]),
    )
    for timing in timings:
        # On an idle bot: what came before is done (the previews read, through the limiter).
        h.idle("one at a time")
        timed = timing()
        h.results.single.append(timed)
        h.results.errors.append((timed.what, timed.errors, 0))
        log(f"{timed.what}: p50 {ms(timed.pct(50))} ms")
    time.sleep(1.0)  # the last approval's card update and thread reply
    h.finish(bot, "after one at a time", graceful=True)
    h.st.reset()


def burst(h: Harness) -> None:
    """`burst` filings sent together (each on its own connection, released at once), `bursts`
    times; each burst is timed from its release to its last card at the fake Slack."""
    size = h.k.burst
    log(f"burst: {h.k.bursts} × {size} filings at once")
    db = Database.sqlite(h.work, "burst")
    bot = h.start_bot(db, "SQLite, new file (migrates)")
    time_cards(h, bot, 3, "warm-up")
    h.results.notes[:] = [t for t in h.results.notes if not t.startswith("warm-up")]
    for b in range(h.k.bursts):
        prepared = h.commands(size)
        acks = h.run(bot, prepared, size, f"burst {b + 1}")
        instances = [p.tag for p in prepared]
        h.st.wait_cards_of(instances, 30)
        found = [c for c in h.st.cards() if c.instance in set(instances)]
        last = max((c.at for c in found), default=None)
        h.results.bursts.append(
            Burst(size, len({c.instance for c in found}), last and last - acks.began_at, acks)
        )
        log(f"burst {b + 1}: last card after {ms(last and last - acks.began_at)} ms")
        # Let the filings finish (a preview read each, 20 a second) before the next burst.
        h.filed(f"burst {b + 1}: previews", prepared, 30)
        time.sleep(1.0)
    h.finish(bot, "after the bursts", graceful=True)
    h.st.reset()
