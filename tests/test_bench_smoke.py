"""`make bench` end to end with tiny counts, so the benchmark cannot rot. Its figures and verdicts
are not checked here: speed is `make bench`'s business, never a timed assertion in a test."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
HEADINGS = (
    "# Benchmarks",
    "## Targets",
    "## Ack latency, closed loop",
    "## Steady rate, open loop",
    "## Burst",
    "## One at a time",
    "## Health checks under load",
    "## SIGKILL after the ack",
    "## Stop during a preview flood",
    "## Rate limit held",
    "## Start-up",
    "## Memory",
    "## Store growth",
    "## Growth of the history",
    "## Store calls with history",
    "## How measured",
)
TARGETS = (
    "| command ack p99 at c=1 ≤ 1.5× bare Bolt |",
    "| approve ack p99 at 3 filings/s + 3 clicks/s ≤ 2.0× bare Bolt |",
    "| every card ≤ 1 s after its ack, at 3 filings/s + 3 clicks/s |",
    "| burst of 3 filings: last card ≤ 1 s (worst burst) |",
    "| c=10: ack p99 < 300 ms, 0 errors, 0 non-200 |",
    "| command to card, one at a time: p50 < 100 ms |",
    "| approve to cloud, one at a time: p50 < 50 ms |",
    "| /readyz p99 < 20 ms while serving 6 requests/s |",
    "| start-up < 1 s (every one of",
    "| peak RSS of a replica < 120 MB (master + worker) |",
    "| SIGKILL ≤ 50 ms after the ack, 4 times: 0 lost |",
    "| Stop → CancelKillTask ≤ 100 ms during 10 previews/s |",
    "| CreateKillTask ≤ 20/s, one process, SQLite |",
)
TINY = {
    "BENCH_REQUESTS": "12",
    "BENCH_LEVELS": "1,10",
    "BENCH_ROUNDS": "1",
    "BENCH_WARMUP": "2",
    "BENCH_STEADY_RATE": "3",
    "BENCH_STEADY_SECONDS": "1",
    "BENCH_BURST": "3",
    "BENCH_BURSTS": "1",
    "BENCH_SAMPLES": "2",
    "BENCH_HEALTH_RATE": "6",
    "BENCH_HEALTH_SECONDS": "1",
    "BENCH_CRASH_ROUNDS": "2",
    "BENCH_CRASH_BATCH": "2",
    "BENCH_CRASH_WAIT": "5",
    "BENCH_FLOOD_RATE": "10",
    "BENCH_STOPS": "1",
    "BENCH_RATE_BURST": "4",
    "BENCH_GROWTH": "0,50",
    "BENCH_GROWTH_SAMPLES": "1",
}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_bench_runs_with_tiny_counts(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env |= TINY | {"BENCH_OUT": str(out)}
    # The same PostgreSQL as the other tests; unreachable, the benchmark skips its parts.
    if os.environ.get("TEST_POSTGRES_URL"):
        env["BENCH_POSTGRES_URL"] = os.environ["TEST_POSTGRES_URL"]
    done = subprocess.run(
        ["make", "--no-print-directory", "bench"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    for heading in HEADINGS:
        assert f"\n{heading}\n" in f"\n{text}", heading
    for target in TARGETS:
        assert target in text, target
    assert "| command | 1 | bare Bolt | 12 |" in text
    assert "| approve | 10 | killtask | 12 |" in text
    assert "| command | killtask | 3 |" in text  # the steady rate: 3 a second for 1 s
    assert "| 2 | 2 | 2 |" in text  # the SIGKILL rounds: 2 rounds, 2 filings, 2 approvals
    assert "| one process, SQLite | 4 |" in text
    assert text in done.stdout  # printed too
