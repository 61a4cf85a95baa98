"""The targets table: each target of `make bench`, what this run measured, and the verdict."""

from __future__ import annotations

import math

from bench.config import RATE_LIMIT, STRESS_LEVELS, TARGETS
from bench.load import Result, percentile
from bench.report import mb, ms
from bench.results import Results

Row = tuple[str, str, bool | None]
T = TARGETS


def acks(results: Results, kind: str, server: str, level: int) -> Result | None:
    return next(
        (
            a.result
            for a in results.acks
            if a.kind == kind and a.server == server and a.result.concurrency == level
        ),
        None,
    )


def ratio_row(label: str, ours: Result | None, base: Result | None, limit: float) -> Row:
    if ours is None or base is None or not ours.latencies or not base.latencies:
        return label, "–", None
    factor = ours.pct(99) / base.pct(99)
    return label, f"{factor:.2f}× ({ms(ours.pct(99))} vs {ms(base.pct(99))} ms)", factor <= limit


def c1(results: Results) -> list[Row]:
    return [
        ratio_row(
            f"{kind} ack p99 at c=1 ≤ {T.ack_c1_ratio}× bare Bolt",
            acks(results, kind, "bot", 1),
            acks(results, kind, "baseline", 1),
            T.ack_c1_ratio,
        )
        for kind in ("command", "approve")
    ]


def steady(results: Results) -> list[Row]:
    ours = next((s for s in results.steady if s.server == "bot"), None)
    base = next((s for s in results.steady if s.server == "baseline"), None)
    rate = ours.rate if ours else 0
    at = f"at {rate} filings/s + {rate} clicks/s"
    rows = [
        ratio_row(
            f"{kind} ack p99 {at} ≤ {T.steady_ratio}× bare Bolt",
            getattr(ours, attr, None),
            getattr(base, attr, None),
            T.steady_ratio,
        )
        for kind, attr in (("command", "commands"), ("approve", "clicks"))
    ]
    label = f"every card ≤ {T.card_after_ack:.0f} s after its ack, {at}"
    if ours is None:
        return [*rows, (label, "–", None)]
    worst = max(ours.card_delays, default=math.nan)
    measured = f"worst {ms(worst)} ms, p50 {ms(percentile(ours.card_delays, 50))} ms"
    measured += f", {ours.cards_missing} missing"
    ok = ours.cards_missing == 0 and bool(ours.card_delays) and worst <= T.card_after_ack
    return [*rows, (label, measured, ok)]


def burst(results: Results) -> list[Row]:
    size = results.bursts[0].size if results.bursts else 0
    label = f"burst of {size} filings: last card ≤ {T.burst_last_card:.0f} s (worst burst)"
    if not results.bursts:
        return [(label, "–", None)]
    times = [b.last_card if b.cards == b.size else None for b in results.bursts]
    shown = ", ".join("missing" if t is None else f"{t:.2f}" for t in times)
    ok = all(t is not None and t <= T.burst_last_card for t in times)
    return [(label, f"{shown} s", ok)]


def stress(results: Results) -> list[Row]:
    rows = []
    for level in STRESS_LEVELS:
        found = [acks(results, kind, "bot", level) for kind in ("command", "approve")]
        label = f"c={level}: ack p99 < {T.stress_p99 * 1000:.0f} ms, 0 errors, 0 non-200"
        if any(r is None for r in found):
            rows.append((label, "–", None))
            continue
        runs = [r for r in found if r is not None]
        p99 = max(r.pct(99) for r in runs)
        bad = sum(r.errors + r.non_200 for r in runs)
        shown = f"{' / '.join(ms(r.pct(99)) for r in runs)} ms (commands / approvals), {bad} bad"
        rows.append((label, shown, p99 < T.stress_p99 and bad == 0))
    return rows


def single(results: Results) -> list[Row]:
    rows = []
    for what, limit in (("command to card", T.card_p50), ("approve to cloud", T.cloud_p50)):
        timed = next((t for t in results.single if t.what == what), None)
        label = f"{what}, one at a time: p50 < {limit * 1000:.0f} ms"
        if timed is None or not timed.latencies:
            rows.append((label, "–", None))
            continue
        measured = f"{ms(timed.pct(50))} ms ({timed.errors} failed)"
        rows.append((label, measured, timed.pct(50) < limit and timed.errors == 0))
    return rows


def health(results: Results) -> list[Row]:
    rows = []
    found = results.health
    for path in ("/healthz", "/readyz"):
        label = f"{path} p99 < {T.probe_p99 * 1000:.0f} ms while serving "
        label += f"{found.rate if found else '?'} requests/s"
        probe = next((p for p in found.probes if p.path == path), None) if found else None
        if probe is None:
            rows.append((label, "–", None))
            continue
        good = probe.statuses.get(200, 0)
        if not good:
            seen = ", ".join(f"{n}× {status}" for status, n in probe.statuses.items())
            seen += f"{', ' if seen else ''}{probe.errors} unanswered" if probe.errors else ""
            rows.append((label, f"never 200 ({seen or 'not probed'})", False))
            continue
        ok = probe.pct(99) < T.probe_p99 and good == len(probe.latencies) and not probe.errors
        rows.append((label, f"{ms(probe.pct(99))} ms ({good} of {len(probe.latencies)} 200)", ok))
    return rows


def process(results: Results) -> list[Row]:
    starts = [s for s in results.starts if s.bot]
    worst = max(starts, key=lambda s: s.seconds, default=None)
    rows: list[Row] = [
        (
            f"start-up < {T.startup:.0f} s (every one of {len(starts)} starts)",
            f"worst {worst.seconds:.2f} s ({worst.label})" if worst else "–",
            None if worst is None else worst.seconds < T.startup,
        )
    ]
    memory = [m for m in results.memory if m.bot]
    peak = max(memory, key=lambda m: m.total, default=None)
    label = f"peak RSS of a replica < {T.rss_mb:.0f} MB (master + worker)"
    if peak is None or not peak.total:
        return [*rows, (label, "–", None)]
    shown = f"{mb(peak.total)} MB = {mb(peak.master)} + {mb(peak.worker)}"
    shown += f" + {mb(peak.other)} (other)" if peak.other else ""
    shown += f" (PSS {mb(peak.pss)} MB when read)" if peak.pss else ""
    return [*rows, (label, shown, peak.total / 1024 < T.rss_mb)]


def crash(results: Results) -> list[Row]:
    c = results.crash
    n = len(c.filings) + len(c.approvals) if c else 0
    label = f"SIGKILL ≤ {T.kill_after_ack * 1000:.0f} ms after the ack, {n} times: 0 lost"
    if c is None or not n:
        return [(label, "–", None)]
    worst = max(c.kill_after_ack, default=math.nan)
    shown = (
        f"{c.lost} lost ({len(c.cards_missing)} cards, {len(c.approvals_lost)} approvals, "
        f"{c.not_acked} not acked); kill ≤ {ms(worst)} ms after each ack; "
        f"{c.duplicate_cards} double cards, {c.duplicate_creates} double CreateKillTask"
    )
    ok = c.lost == 0 and worst <= T.kill_after_ack
    ok = ok and c.duplicate_cards == 0 and c.duplicate_creates == 0
    return [(label, shown, ok)]


def stop(results: Results) -> list[Row]:
    s = results.stop
    rate = s.rate if s else "?"
    label = f"Stop → CancelKillTask ≤ {T.stop_sent * 1000:.0f} ms during {rate} previews/s"
    if s is None:
        return [(label, "–", None)]
    if not s.timed.latencies:
        return [(label, f"none of {s.timed.errors} arrived", False)]
    worst = s.timed.pct(100)
    shown = f"worst {ms(worst)} ms of {len(s.timed.latencies)} ({s.timed.errors} failed)"
    return [(label, shown, worst <= T.stop_sent and s.timed.errors == 0)]


def rate(results: Results) -> list[Row]:
    rows = []
    for row in results.rates:
        worst = max([row.total, *row.per_process.values()])
        rows.append(
            (
                f"CreateKillTask ≤ {RATE_LIMIT}/s, {row.scenario}",
                f"peak {worst}/s ({row.creates} of {row.approvals} created)",
                worst <= RATE_LIMIT and row.creates == row.approvals,
            )
        )
    return rows


def errors(results: Results) -> list[Row]:
    bad = sum(e + n for _, e, n in results.errors)
    return [("0 errors and 0 non-200 in every timed run", str(bad), bad == 0)]


def all_rows(results: Results) -> list[Row]:
    groups = (c1, steady, burst, stress, single, health, process, crash, stop, rate, errors)
    return [row for group in groups for row in group(results)]
