"""`make bench` with tiny counts, so the benchmark cannot rot. Its figures are not checked."""

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
    "## Ack latency",
    "## Approval to cloud",
    "## Rate limit held",
    "## Start-up",
    "## Memory",
    "## Store growth",
    "## Growth of the history",
    "## How measured",
)
TINY = {
    "BENCH_REQUESTS": "20",
    "BENCH_LEVELS": "1,4",
    "BENCH_GROWTH": "0,50",
    "BENCH_GROWTH_REQUESTS": "20",
    "BENCH_GROWTH_CONCURRENCY": "4",
    "BENCH_GROWTH_ROUNDS": "1",
    "BENCH_GROWTH_CLOUD_SAMPLES": "2",
    "BENCH_CLOUD_SAMPLES": "3",
    "BENCH_BURST": "6",
    "BENCH_WARMUP": "2",
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
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    for heading in HEADINGS:
        assert heading in text, heading
    assert "| command | 1 | bare Bolt | 20 |" in text
    assert "| approve | 4 | killtask | 20 |" in text
    assert "| one process, SQLite | 6 |" in text
    assert text in done.stdout  # printed too
