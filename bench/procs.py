"""What the benchmark reads about processes: peak memory and CPU time, from /proc (Linux).

Starting, waiting for and stopping the bot is `standins.launch`, shared with the tests and the
rehearsal; this module only looks at what it started. Elsewhere than Linux the figures are
missing ("–" in the report), nothing fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from standins.launch import BotProcess


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def worker_pid(bot: BotProcess) -> int | None:
    """The gunicorn worker: the first child forked from the master (same command line)."""
    pids = bot.pids()
    if not pids:
        return None
    master = _cmdline(pids[0])
    return next((pid for pid in pids[1:] if _cmdline(pid) == master), None)


def status_kb(pid: int | None, key: str = "VmHWM", name: str = "status") -> int | None:
    """A field of /proc/<pid>/status in kB (VmHWM: peak resident set size), or of another file
    of that form (smaps_rollup: Pss)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss(bot: BotProcess) -> tuple[int | None, int | None, int | None]:
    """VmHWM (kB) of the master, of its worker, and of any other process of the group summed
    (None: no such process, or no /proc)."""
    pids = bot.pids()
    if not pids:
        return None, None, None
    worker = worker_pid(bot)
    others = [status_kb(pid) for pid in pids[1:] if pid != worker]
    other = sum(v or 0 for v in others) if others else None
    return status_kb(pids[0]), status_kb(worker), other


def pss_now(bot: BotProcess) -> int | None:
    """The proportional set size (kB) of all the group's processes, summed, as of now: pages a
    forked worker shares with its master are counted once, not twice as in the VmHWM sum."""
    found = [status_kb(pid, "Pss", "smaps_rollup") for pid in bot.pids()]
    return sum(found) if found and None not in found else None  # type: ignore[arg-type]


def cpu_seconds(pids: Iterable[int | None]) -> float:
    """User plus system CPU time these processes have used so far (0.0 for those gone)."""
    total = 0.0
    for pid in pids:
        if pid is None:
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all CPUs together."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0]
    except OSError:
        return 0.0, 0.0
    values = [int(v) for v in first.split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick
