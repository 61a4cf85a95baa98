"""Closed-loop acks, ours and bare Bolt's, at each concurrency (c=1 for the ratio target, c=10
and c=50 for stress), in rounds that alternate between the two."""

from __future__ import annotations

from bench import load
from bench.config import CHANNEL, REQUESTER
from bench.harness import Harness, log
from bench.report import ms
from bench.results import AckRun
from bench.seed import Database
from standins.launch import BotProcess

KINDS = ("command", "approve")


def measure(h: Harness) -> None:
    """Each level's requests are split across rounds; in each round bare Bolt and the bot take
    turns, so a busy moment of the shared machine falls on both; the rounds are pooled."""
    log("acks: bare Bolt and the bot, alternating")
    base = h.start_baseline()
    warm = h.k.warmup
    fake = h.fake_pending(h.k.requests)
    h.run(base, h.commands(warm), 5, "baseline warm-up")
    h.run(base, h.clicks(fake[:warm]), 5, "baseline warm-up")
    db = Database.sqlite(h.work, "acks")
    db.create_schema()
    rounds = max(1, h.k.rounds)
    runs: dict[tuple[str, str, int], list[load.Result]] = {}
    done: dict[tuple[str, int], int] = {}
    for r in range(rounds):
        for level in h.k.levels:
            for kind in KINDS:
                n = len(range(r, h.k.requests, rounds))  # this round's share
                theirs = h.commands(n) if kind == "command" else h.clicks(fake[:n])
                runs.setdefault((kind, "baseline", level), []).append(
                    h.run(base, theirs, level, f"baseline {kind} c={level}")
                )
                result, got = bot_run(h, db, kind, level, n, last=r == rounds - 1)
                runs.setdefault((kind, "bot", level), []).append(result)
                done[(kind, level)] = done.get((kind, level), 0) + got
    h.finish(base, "bare Bolt, after all levels", graceful=True)
    h.st.reset()
    for (kind, server, level), parts in runs.items():
        pooled = load.merge(parts)
        background = ""
        if server == "bot":
            noun = "cards posted" if kind == "command" else "CreateKillTask sent"
            background = f"{done[(kind, level)]:,} of {pooled.requests:,} {noun}"
        h.results.acks.append(AckRun(kind, server, pooled, background))
        log(f"{server} {kind} c={level}: p99 {ms(pooled.pct(99))} ms")


def bot_run(
    h: Harness, db: Database, kind: str, level: int, n: int, last: bool
) -> tuple[load.Result, int]:
    """One timed run on a freshly started bot; returns it and how much work got done behind.

    The work behind the acks (a preview read per filing, two DBbrain calls per approval) goes
    through the 20-per-second DBbrain limit while acks come far faster, so a closed loop builds
    a backlog: after each run the bot is killed (SIGKILL) and the next run starts afresh."""
    warm = h.k.warmup
    bot: BotProcess
    if kind == "command":
        bot = h.start_bot(db, "SQLite, restarted after SIGKILL")
        warming = h.commands(warm)
        h.run(bot, warming, 5, "bot warm-up")
        h.filed("command warm-up", warming, 60)
        result = h.run(bot, h.commands(n), level, f"bot command c={level}")
        got = len(h.st.cards()) - warm
    else:
        pending = db.seed_pending(n + warm, CHANNEL, REQUESTER, f"a{level}x")
        bot = h.start_bot(db, "SQLite, more requests seeded, restarted after SIGKILL")
        h.run(bot, h.clicks(pending[:warm]), 5, "bot warm-up")
        h.settle("approve warm-up", h.st.wait_creates(warm, 60))
        result = h.run(bot, h.clicks(pending[warm:]), level, f"bot approve c={level}")
        got = sum(c.action == "CreateKillTask" for c in h.st.cloud_calls()) - warm
    noun = "commands" if kind == "command" else "approvals"
    h.finish(bot, f"after {n:,} {noun} at c={level}", record=last)
    h.st.reset()
    return result, got
