"""Open loop at the rates people could produce: filings and Approve clicks at a steady rate,
ours and bare Bolt's, with each card timed against its command's ack; and the health checks
probed while the bot serves a steady load."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from bench import load
from bench.config import CHANNEL, REQUESTER
from bench.harness import HOST, Harness, log
from bench.report import ms
from bench.results import Health, Probe, SteadyRun
from bench.seed import Database
from standins.launch import BotProcess

CARD_WAIT = 30.0  # seconds the bot gets, after the run, to post the cards it still owes
PROBE_EVERY = 0.05  # seconds between health GETs, the paths taken in turn
PROBE_TIMEOUT = 5.0  # longer than a probe's usual 1 s, so a slow answer is timed, not lost
PROBE_PATHS = ("/healthz", "/readyz")


def schedule(items: Sequence[load.Prepared], rate: float, offset: float = 0.0):  # type: ignore[no-untyped-def]
    return [(offset + i / rate, item) for i, item in enumerate(items)]


def both(
    h: Harness, bot: BotProcess, commands: list[load.Prepared], clicks: list[load.Prepared],
    rate: float, phase: str,
) -> tuple[load.Result, load.Result]:  # fmt: skip
    """Commands and clicks, each at `rate` a second, the clicks half a period after the
    commands, on two sets of connections at once."""
    out: dict[str, load.Result] = {}

    def go(name: str, items: list[load.Prepared], offset: float) -> None:
        out[name] = load.open_loop(HOST, bot.port, schedule(items, rate, offset), threads=8)

    threads = [
        threading.Thread(target=go, args=("commands", commands, 0.0)),
        threading.Thread(target=go, args=("clicks", clicks, 0.5 / rate)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    h.account(f"{phase} commands", out["commands"])
    h.account(f"{phase} clicks", out["clicks"])
    return out["commands"], out["clicks"]


def measure(h: Harness) -> None:
    rate, n, warm = h.k.steady_rate, h.k.steady_rate * h.k.steady_seconds, h.k.warmup
    log(f"steady: {rate} filings/s and {rate} clicks/s for {h.k.steady_seconds} s")
    base = h.start_baseline()
    fake = h.fake_pending(n + warm)
    h.run(base, h.commands(warm) + h.clicks(fake[:warm]), 2, "baseline warm-up")
    commands, clicks = both(h, base, h.commands(n), h.clicks(fake[warm:]), rate, "baseline")
    h.results.steady.append(SteadyRun("baseline", rate, commands, clicks))
    h.finish(base, "bare Bolt, after the steady rate", graceful=True)
    h.st.reset()

    db = Database.sqlite(h.work, "steady")
    db.create_schema()
    pending = db.seed_pending(n + warm, CHANNEL, REQUESTER, "s")
    bot = h.start_bot(db, "SQLite, steady rate")
    h.run(bot, h.commands(warm) + h.clicks(pending[:warm]), 2, "bot warm-up")
    h.settle("steady warm-up", h.st.wait_creates(warm, 60))
    h.st.reset()
    prepared = h.commands(n)
    commands, clicks = both(h, bot, prepared, h.clicks(pending[warm:]), rate, "bot")
    run = SteadyRun("bot", rate, commands, clicks)
    acked = [p.tag for p in prepared if p.tag in commands.answered_at]
    h.st.wait_cards_of(acked, CARD_WAIT)
    cards = {c.instance: c for c in reversed(h.st.cards())}  # the first card of each
    for instance in acked:
        card = cards.get(instance)
        if card is None:
            run.cards_missing += 1
        else:
            run.card_delays.append(card.at - commands.answered_at[instance])
    h.results.steady.append(run)
    worst = max(run.card_delays, default=float("nan"))
    log(f"steady: ack p99 {ms(commands.pct(99))} / {ms(clicks.pct(99))} ms, card {ms(worst)} ms")
    h.finish(bot, "after the steady rate")  # SIGKILL: the approvals' backlog is not measured
    h.st.reset()


def health(h: Harness) -> None:
    """GET /healthz and /readyz in turn, a new connection each (as a probe does), while the bot
    serves filings and clicks at `health_rate` a second in all."""
    rate, seconds = h.k.health_rate, h.k.health_seconds
    log(f"health: probes while serving {rate} requests/s")
    n = max(1, rate * seconds // 2)
    db = Database.sqlite(h.work, "health")
    db.create_schema()
    pending = db.seed_pending(n, CHANNEL, REQUESTER, "h")
    bot = h.start_bot(db, "SQLite, health probes")
    probes = {path: Probe(path) for path in PROBE_PATHS}
    stop = threading.Event()
    prober = threading.Thread(target=probe_loop, args=(bot.health_url, probes, stop))
    prober.start()
    try:
        commands, clicks = both(h, bot, h.commands(n), h.clicks(pending), rate / 2, "health")
    finally:
        stop.set()
        prober.join()
    h.results.health = Health(rate, load.merge([commands, clicks]), list(probes.values()))
    for probe in probes.values():
        log(f"health: {probe.path} p99 {ms(probe.pct(99))} ms, statuses {dict(probe.statuses)}")
    h.finish(bot, "after the health probes")
    h.st.reset()


def probe_loop(base_url: str, probes: dict[str, Probe], stop: threading.Event) -> None:
    parts = urlsplit(base_url)
    turn = 0
    while not stop.is_set():
        probe = probes[PROBE_PATHS[turn % len(PROBE_PATHS)]]
        turn += 1
        began = time.perf_counter()
        conn = http.client.HTTPConnection(parts.hostname or HOST, parts.port, timeout=PROBE_TIMEOUT)
        try:
            conn.request("GET", probe.path)
            response = conn.getresponse()
            response.read()
            probe.latencies.append(time.perf_counter() - began)
            probe.statuses[response.status] += 1
        except (OSError, http.client.HTTPException):
            probe.errors += 1
        finally:
            conn.close()
        stop.wait(max(0.0, PROBE_EVERY - (time.perf_counter() - began)))
