"""Stop first: Stop clicks on running kill tasks while `/killtask preview` commands flood in
faster than the DBbrain budget allows; each Stop is timed to its CancelKillTask's arrival."""

from __future__ import annotations

import threading
import time

from bench import load
from bench.config import CHANNEL, REQUESTER
from bench.harness import HOST, Harness, log
from bench.latency import time_approvals
from bench.report import ms
from bench.results import StopFlood, Timed
from bench.seed import Database, Pending
from bench.steady import schedule
from standins.launch import BotProcess

LEAD = 1.0  # seconds of flood before the first Stop, so the reads queue up
EVERY = 1.0  # seconds between Stop clicks


def measure(h: Harness) -> None:
    k = h.k
    log(f"stop: {k.stops} Stop clicks during {k.flood_rate} previews/s")
    db = Database.sqlite(h.work, "stop")
    db.create_schema()
    pending = db.seed_pending(k.stops, CHANNEL, REQUESTER, "t")
    bot = h.start_bot(db, "SQLite, before a preview flood")
    time_approvals(h, bot, pending, "warm-up")
    h.results.notes[:] = [t for t in h.results.notes if not t.startswith("warm-up")]
    running = wait_running(db, [p.instance for p in pending], 15)
    h.settle("stop: the tasks to stop are running", running)
    time.sleep(1.3)  # the approvals' DBbrain calls leave the limiter's window
    previews = h.commands(int((LEAD + EVERY * k.stops + 0.5) * k.flood_rate), verb="preview")
    timed = Timed("stop to CancelKillTask")
    sent: dict[str, float] = {}
    stopper = threading.Thread(target=click_stops, args=(h, bot, pending, sent))
    stopper.start()
    flood = h.open_loop(bot, schedule(previews, k.flood_rate), "preview flood")
    stopper.join()
    for p in pending:
        call = h.st.wait_call_of("CancelKillTask", p.instance, 15) if p.instance in sent else None
        if call is None:
            timed.errors += 1
            h.note(f"stop #{p.request_id}: no CancelKillTask within 15 s of the flood's end")
        else:
            timed.latencies.append(call.received_at - sent[p.instance])
    h.results.stop = StopFlood(k.flood_rate, flood, timed)
    h.results.errors.append(("stop during a preview flood", timed.errors, 0))
    log(f"stop: worst {ms(timed.pct(100))} ms from click to CancelKillTask")
    h.finish(bot, "after the preview flood")  # SIGKILL: the previews' backlog is not measured
    h.st.reset()


def click_stops(h: Harness, bot: BotProcess, pending: list[Pending], sent: dict) -> None:
    began = time.monotonic()
    for i, (p, item) in enumerate(zip(pending, h.clicks(pending, "stop"), strict=True)):
        time.sleep(max(0.0, began + LEAD + i * EVERY - time.monotonic()))
        status, at = load.post_once(HOST, bot.port, item)
        if status == 200:
            sent[p.instance] = at
        else:
            h.note(f"stop #{p.request_id}: the click answered {status or 'nothing'}")


def wait_running(db: Database, instances: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = db.states(instances)
        if all(states.get(i) == "running" for i in instances):
            return True
        time.sleep(0.1)
    return False
