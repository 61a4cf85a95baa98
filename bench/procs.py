"""Starting and stopping the server processes (the bot, the baseline) and reading their memory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without proxies or Slack settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and not k.startswith("SLACK")}
    env.update(extra)
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            found += [int(p) for p in text.split()]
    except OSError:
        pass
    return found


def is_work_process(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"bot" in argv and b"work" in argv


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time a process has used so far (0.0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all CPUs together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


def status_kb(pid: int, key: str) -> int | None:
    """A field of /proc/<pid>/status in kB (VmHWM: peak resident set size)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class Server:
    """A server started as `python -m <module>` in its own process group."""

    name: str
    module: str
    env: dict[str, str]
    log_path: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    startup: float = 0.0  # seconds from Popen to the first 200 from /healthz
    rss_samples: list[dict[str, int | None]] = field(default_factory=list)

    def start(self, timeout: float = 60.0) -> Server:
        self.env["PORT"] = str(self.port or free_port())
        self.port = int(self.env["PORT"])
        self._log = self.log_path.open("ab")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        began = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # SIGKILL of the group takes the gunicorn worker too
        )
        deadline = began + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text(errors="replace")[-3000:]
                )
            try:
                with opener.open(f"{self.url}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        self.startup = time.perf_counter() - began
                        return self
            except OSError:
                time.sleep(0.005)
        self.kill()
        raise RuntimeError(
            f"{self.name} did not answer /healthz in {timeout}s; see {self.log_path}"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def worker_pid(self) -> int | None:
        """The gunicorn worker: the master's child that is not the work process."""
        assert self.proc is not None
        kids = [pid for pid in children(self.proc.pid) if not is_work_process(pid)]
        return kids[0] if kids else None

    @property
    def work_pid(self) -> int | None:
        """The bot's work process (`python -m bot work`), which runs what the acks hand over."""
        assert self.proc is not None
        kids = [pid for pid in children(self.proc.pid) if is_work_process(pid)]
        return kids[0] if kids else None

    def peak_rss(self) -> dict[str, int | None]:
        """VmHWM (kB) of the gunicorn master, its worker and the work process, as of now."""
        assert self.proc is not None
        worker, work = self.worker_pid, self.work_pid
        sample = {
            "master": status_kb(self.proc.pid, "VmHWM"),
            "worker": status_kb(worker, "VmHWM") if worker else None,
            "work": status_kb(work, "VmHWM") if work else None,
        }
        self.rss_samples.append(sample)
        return sample

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, as an orchestrator would; gunicorn lets in-flight work finish."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group: nothing of the server survives, no drain."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if not self._log.closed:
            self._log.close()
