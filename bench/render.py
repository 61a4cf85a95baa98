"""docs/benchmarks.md: one function per section, each a heading, a line on what was measured,
and one table."""

from __future__ import annotations

import statistics

from bench import targets
from bench.config import PACE, Knobs
from bench.load import Result, percentile
from bench.report import mb, ms, ratio, table, verdict
from bench.results import Results


def pcts(values: list[float], which: tuple[int, ...] = (50, 99, 100)) -> list[str]:
    return [ms(percentile(values, p)) for p in which]


def section(title: str, intro: str, body: str) -> str:
    return f"## {title}\n\n{intro}\n\n{body}\n"


def cpu_text(r: Result) -> str:
    c = r.cpu
    if not c:
        return ""
    return f"{c['bot']:.1f} / {c['stand-ins']:.1f} / {c['client']:.1f} ({c['machine']:.0%})"


def targets_table(results: Results) -> str:
    rows = [(t, m, verdict(v)) for t, m, v in targets.all_rows(results)]
    return section(
        "Targets",
        "What people feel, at loads an incident channel can produce, plus one stress level.",
        table(["target", "measured", "verdict"], rows),
    )


def acks(results: Results, k: Knobs) -> str:
    base = {(a.kind, a.result.concurrency): a.result for a in results.acks if a.server != "bot"}
    rows = []
    for a in sorted(
        results.acks, key=lambda a: (a.kind, a.result.concurrency, a.server != "baseline")
    ):
        r, theirs = a.result, base.get((a.kind, a.result.concurrency))
        ours = a.server == "bot" and theirs is not None
        rows.append(
            (
                a.kind, r.concurrency, "killtask" if a.server == "bot" else "bare Bolt",
                f"{r.requests:,}", r.errors, r.non_200, f"{r.throughput:,.0f}",
                ms(r.pct(50)), ms(r.pct(95)), ms(r.pct(99)), ms(r.pct(100)),
                ratio(r.pct(50), theirs.pct(50)) if ours and theirs else "",
                ratio(r.pct(99), theirs.pct(99)) if ours and theirs else "",
                cpu_text(r), a.done,
            )
        )  # fmt: skip
    headers = ["request", "c", "server", "n", "errors", "non-200", "req/s", "p50", "p95", "p99"]
    headers += ["max", "p50 ÷ bare", "p99 ÷ bare", "CPU s: bot / stand-ins / client (machine)"]
    headers += ["bot's work done meanwhile"]
    intro = (
        "Signed `/killtask <instance> …` commands (each files a request and posts a card) and "
        "signed Approve clicks, closed loop: each of c connections sends its next request when "
        f"the previous answer is read. {k.requests:,} requests per row, in {k.rounds} rounds "
        "that alternate between bare Bolt and the bot. Milliseconds."
    )
    return section("Ack latency, closed loop", intro, table(headers, rows))


def steady_row(server: str, kind: str, r: Result, cards: list[float], missing: str) -> list:
    row = [kind, server, f"{r.requests:,}", r.errors, r.non_200, r.late]
    row += [ms(r.pct(50)), ms(r.pct(99)), ms(r.pct(100))]
    if not cards:
        return [*row, "", "", "", missing]
    return [*row, ms(percentile(cards, 50)), ms(percentile(cards, 99)), ms(max(cards)), missing]


def steady(results: Results) -> str:
    rows = []
    for s in results.steady:
        server = "killtask" if s.server == "bot" else "bare Bolt"
        missing = str(s.cards_missing) if s.server == "bot" else ""
        rows.append(steady_row(server, "command", s.commands, s.card_delays, missing))
        rows.append(steady_row(server, "approve", s.clicks, [], ""))
    rate = results.steady[0].rate if results.steady else 0
    intro = (
        f"Open loop: {rate} filings and {rate} Approve clicks a second, sent on schedule "
        "whatever the answers (the clicks half a period after the filings), on 8 connections "
        "each. Late = sent over 10 ms after its time. Card = the card's chat.postMessage at "
        "the fake Slack minus its command's ack at the client. Milliseconds."
    )
    headers = ["request", "server", "n", "errors", "non-200", "late", "ack p50", "ack p99"]
    headers += ["ack max", "card p50", "card p99", "card max", "cards missing"]
    return section("Steady rate, open loop", intro, table(headers, rows))


def bursts(results: Results) -> str:
    rows = [
        (i + 1, b.size, b.cards, ms(b.last_card), ms(b.acks.pct(100)) if b.acks else "–")
        for i, b in enumerate(results.bursts)
    ]
    intro = (
        "Filings sent at once, each on a connection of its own, released together; timed from "
        "the release to the last of their cards at the fake Slack. Milliseconds."
    )
    return section(
        "Burst", intro, table(["burst", "filings", "cards", "last card", "slowest ack"], rows)
    )


def single(results: Results) -> str:
    rows = [
        [t.what, len(t.latencies), t.errors, *pcts(t.latencies), ms(percentile(t.acks, 50))]
        for t in results.single
    ]
    intro = (
        "One at a time on an idle bot, at most one every "
        f"{PACE * 1000:.0f} ms: from the request leaving the client to the card's "
        "chat.postMessage at the fake Slack, or to CreateKillTask at the DBbrain emulator "
        "(`time.time()` on both sides, one machine). Milliseconds."
    )
    headers = ["from → to", "samples", "failed", "p50", "p99", "max", "ack p50"]
    return section("One at a time", intro, table(headers, rows))


def health(results: Results) -> str:
    found = results.health
    rows = []
    if found is not None:
        for p in found.probes:
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(p.statuses.items()))
            rows.append(
                (
                    p.path,
                    len(p.latencies),
                    statuses,
                    p.errors,
                    ms(p.pct(50)),
                    ms(p.pct(99)),
                    ms(p.pct(100)),
                )
            )
    rate = found.rate if found else 0
    served = found.load if found else None
    intro = (
        f"GETs of each path in turn, every 50 ms, a new connection each (as a probe does), while "
        f"the bot serves {rate} signed requests a second (half filings, half Approve clicks; "
        f"their ack p99 {ms(served.pct(99) if served else None)} ms). Milliseconds."
    )
    headers = ["path", "GETs", "statuses", "errors", "p50", "p99", "max"]
    return section("Health checks under load", intro, table(headers, rows))


def crash(results: Results) -> str:
    c = results.crash
    if c is None:
        return section("SIGKILL after the ack", "Not run.", "")
    after = c.kill_after_ack
    rows = [
        (
            c.rounds, len(c.filings), len(c.approvals), c.not_acked,
            f"{ms(min(after, default=None))}–{ms(max(after, default=None))}",
            len(c.cards_missing), c.started, c.unknown, len(c.approvals_lost),
            ", ".join(f"{s}: {n}" for s, n in sorted(c.states.items())),
            c.duplicate_cards, c.duplicate_creates,
            "–" if c.recovered_in is None else f"{c.recovered_in:.1f}",
        )
    ]  # fmt: skip
    intro = (
        "Each round starts the bot on the same SQLite file, sends a filing or an Approve click "
        "(filings and approvals in turn), and kills the process group (SIGKILL) 0–40 ms after "
        "the ack, at random. After the last round the bot is started once more; then every "
        "filing must have its card at the fake Slack and every approval must have started "
        '(CreateKillTask at the emulator) or be "outcome unknown".'
    )
    headers = ["rounds", "filings", "approvals", "not acked", "kill after ack, ms"]
    headers += ["cards missing", "approvals started", "outcome unknown", "approvals lost"]
    headers += ["approvals' states", "double cards", "double CreateKillTask", "all accounted, s"]
    return section("SIGKILL after the ack", intro, table(headers, rows))


def stop(results: Results) -> str:
    s = results.stop
    rows = []
    if s is not None:
        t, p = s.timed, s.previews
        row = [s.rate, f"{p.requests:,}", ms(p.pct(99)), len(t.latencies), t.errors]
        rows.append([*row, ms(t.pct(50)), ms(t.pct(100))])
    intro = (
        "Running kill tasks are stopped one a second while `/killtask preview` commands arrive "
        "faster than the 20-per-second DBbrain budget: from the Stop click leaving the client "
        "to CancelKillTask arriving at the emulator. Milliseconds."
    )
    headers = ["previews/s", "previews", "preview ack p99", "stops", "failed", "p50", "max"]
    return section("Stop during a preview flood", intro, table(headers, rows))


def rates(results: Results, k: Knobs) -> str:
    rows = [
        (
            r.scenario, r.approvals, r.creates, f"{r.seconds:.1f}",
            ", ".join(f"{key}: {v}" for key, v in r.per_process.items()), r.total,
            ", ".join(f"{key}: {v}" for key, v in r.all_calls_per_process.items()),
            r.all_calls_total, r.ack_errors,
        )
        for r in results.rates
    ]  # fmt: skip
    intro = (
        f"{k.rate_burst} requests filed (untimed), then all approved at once (50 concurrent "
        "clicks per replica). Peak = the most calls the emulator received in any sliding "
        "one-second window; per replica = per CAM key. The limiter counts every DBbrain call "
        "(the preview reads too), so the last columns show what it governs."
    )
    headers = ["scenario", "approvals", "CreateKillTask received", "seconds to last"]
    headers += ["peak/s per replica", "peak/s total", "all calls: peak/s per replica"]
    headers += ["… total", "click errors"]
    return section("Rate limit held", intro, table(headers, rows))


def starts(results: Results) -> str:
    by_label: dict[str, list[float]] = {}
    for s in results.starts:
        by_label.setdefault(s.label, []).append(s.seconds)
    rows = [
        (label, len(found), f"{statistics.median(found):.2f}", f"{max(found):.2f}")
        for label, found in by_label.items()
    ]
    bot = [s.seconds for s in results.starts if s.bot]
    summary = (
        f"\nBot: median {statistics.median(bot):.2f} s, best {min(bot):.2f} s, worst "
        f"{max(bot):.2f} s over {len(bot)} starts.\n"
        if bot
        else ""
    )
    intro = "Seconds from starting the process to the first 200 from `/readyz`, by kind of start."
    headers = ["start", "starts", "median", "worst"]
    return section("Start-up", intro, table(headers, rows) + "\n" + summary)


def memory(results: Results) -> str:
    rows = [
        [
            m.after,
            "killtask" if m.bot else "bare Bolt",
            *map(mb, (m.master, m.worker, m.other, m.total, m.pss)),
        ]
        for m in results.memory
    ]
    intro = (
        "Peak resident set (VmHWM of /proc/<pid>/status) of the gunicorn master, its worker, "
        "any other process of the group, and their sum, read after each load, before the "
        "process was stopped; VmHWM counts the pages a worker still shares with its master in "
        "both. PSS: the proportional set size (smaps_rollup) of all of them at that moment, "
        "shared pages counted once. MB."
    )
    headers = ["after", "server", "master", "worker", "other", "replica", "PSS now"]
    return section("Memory", intro, table(headers, rows))


def store_growth(results: Results) -> str:
    rows = []
    for g in results.store_growth:
        per = f"{(g.after - g.before) * 1000 / g.requests / 1024:,.0f} KB" if g.requests else "–"
        rows.append([g.database, g.step, g.requests, f"{g.before:,}", f"{g.after:,}", per])
    intro = (
        "Bytes added per 1,000 requests: the SQLite file (WAL checkpointed first), or "
        "`pg_total_relation_size` summed over the schema's tables. Measured on the rate-limit "
        "runs' fresh databases."
    )
    headers = ["database", "step", "requests", "bytes before", "bytes after", "per 1,000"]
    return section("Store growth", intro, table(headers, rows))


def history(results: Results) -> str:
    rows = []
    for h in results.history:
        both = [*pcts(h.cards.latencies, (50, 100)), *pcts(h.cloud.latencies, (50, 100))]
        rows.append([h.database, f"{h.past:,}", *both, h.cards.errors + h.cloud.errors])
    intro = (
        "Past requests (finished, expired, rejected, stopped, failed; two audit rows each) "
        "written before the bot starts; then filings and approvals one at a time, as in "
        '"One at a time". Milliseconds.'
    )
    headers = ["database", "past requests", "card p50", "card max", "cloud p50", "cloud max"]
    return section("Growth of the history", intro, table([*headers, "failed"], rows))


def store_calls(results: Results) -> str:
    names = list(results.history[0].queries) if results.history else []
    rows = [
        [h.database, f"{h.past:,}", *(ms(h.queries.get(n)) for n in names)] for h in results.history
    ]
    intro = (
        "The store calls behind a click, a filing and each tick, timed from the benchmark "
        "against the history databases before the bot ran: median of 20 calls, milliseconds "
        "(– : this version of the store has no such call)."
    )
    return section("Store calls with history", intro, table(["database", "past", *names], rows))
