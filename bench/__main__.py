"""`make bench`: the real bot under load on this machine, against the local stand-ins, side by
side with a bare Bolt app on the same server stack.

Prints a markdown report and writes it to BENCH_OUT (docs/benchmarks.md). The knobs, each with
an environment variable for a quick run, are in `bench/config.py`.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from bench import acks, crash, growth, latency, rate, render, steady, stop, targets
from bench.config import Knobs
from bench.harness import Harness, log
from bench.standins import Standins
from standins.launch import ROOT, clean_env

HERE = Path(__file__).parent
STEPS: dict[str, Callable[[Harness], None]] = {
    "acks": acks.measure,
    "steady": steady.measure,
    "burst": latency.burst,
    "single": latency.single,
    "health": steady.health,
    "crash": crash.measure,
    "stop": stop.measure,
    "rate": rate.measure,
    "growth": growth.measure,
}


def check_postgres(h: Harness) -> None:
    try:
        engine = create_engine(h.k.postgres_url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        h.postgres = h.k.postgres_url
    except Exception as exc:
        h.note(
            f"PostgreSQL at {h.k.postgres_url} is not reachable ({type(exc).__name__}): the "
            "two-replica rate limit and the PostgreSQL history runs were skipped."
        )
        log(f"PostgreSQL not reachable ({type(exc).__name__}); skipping its parts")


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "-uno")
    except OSError:
        return "unknown"
    return f"{head}{' with uncommitted changes' if dirty else ''}" if head else "unknown"


def header(k: Knobs, commit: str, began: datetime.datetime, took: float, loads: tuple) -> str:
    return (
        "# Benchmarks\n\n"
        f"Run {began:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs ({platform.machine()}, "
        f"{platform.system()} {platform.release()}), Python {platform.python_version()}, "
        f"commit {commit}; took {took / 60:.1f} min. Load average before/after: "
        f"{loads[0]:.2f} / {loads[1]:.2f}. Made by `make bench` (`python -m bench`); the knobs "
        f"and their environment variables are in `bench/config.py`. Parts run: "
        f"{', '.join(s for s in STEPS if s in k.only)}. Bare Bolt: {BASELINE_MODE}.\n"
    )


BASELINE_MODE = (
    "its listeners inline, as the bot's (BENCH_BASELINE_INLINE=1)"
    if os.environ.get("BENCH_BASELINE_INLINE") == "1"
    else "Bolt's default, a listener thread whose ack the request's thread looks for every 10 ms"
)


def report(h: Harness, head: str) -> tuple[str, bool]:
    r, k = h.results, h.k
    parts = [
        head,
        render.targets_table(r),
        render.acks(r, k),
        render.steady(r),
        render.bursts(r),
        render.single(r),
        render.health(r),
        render.crash(r),
        render.stop(r),
        render.rates(r, k),
        render.starts(r),
        render.memory(r),
        render.store_growth(r),
        render.history(r),
        render.store_calls(r),
        (HERE / "findings.md").read_text().strip() + "\n",
        "## How measured\n\n" + (HERE / "how.md").read_text().strip() + "\n",
    ]
    if r.notes:
        parts.append("## Notes from this run\n\n" + "".join(f"- {n}\n" for n in r.notes))
    failed = any(v is False for _, _, v in targets.all_rows(r))
    return "\n".join(parts), failed


def main() -> int:
    knobs = Knobs()
    began = datetime.datetime.now(datetime.UTC)
    started, load_before = time.monotonic(), os.getloadavg()[0]
    commit = git_commit()  # what runs, even if a commit lands meanwhile
    work = Path(tempfile.mkdtemp(prefix="killtask-bench-"))
    log(f"working folder {work}")
    h: Harness | None = None
    ok = False
    try:
        with (
            (work / "standins.log").open("w") as standins_log,
            Standins(cwd=str(ROOT), env=clean_env(), log=standins_log) as standins,
        ):
            h = Harness(knobs, standins, work)
            check_postgres(h)
            try:
                for name, step in STEPS.items():
                    if name in knobs.only:
                        step(h)
            finally:
                h.kill_all()
        took = time.monotonic() - started
        head = header(knobs, commit, began, took, (load_before, os.getloadavg()[0]))
        markdown, failed = report(h, head)
        print(markdown)
        knobs.out.parent.mkdir(parents=True, exist_ok=True)
        knobs.out.write_text(markdown)
        log(f"wrote {knobs.out} in {took / 60:.1f} min")
        ok = True
        return 1 if failed and knobs.strict else 0
    finally:
        if knobs.keep or not ok or (h is not None and h.results.notes):
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
