"""Start the real bot as a process and wait until it is ready: one helper for the tests, the
benchmark and the rehearsal.

The bot (`python -m <module>`, `bot` unless told) runs from the repository root in a process
group of its own, so a SIGKILL of the group takes every process of it, as a crash would. Its
output goes to a log file. Readiness is `GET /readyz` answering 200: on PORT in HTTP mode, on
HEALTH_PORT in Socket Mode (SLACK_APP_TOKEN set). Only a server with no `/readyz` at all (404)
is asked `/healthz` instead. Nothing here reads /proc, so it works on macOS as on Linux.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
LOOPBACK = "127.0.0.1"


class BotNotReady(RuntimeError):
    """The bot exited, or did not answer its readiness check in time; the message holds the end
    of its log."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without proxies or Slack settings, plus `extra`; loopback never proxied."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and not k.startswith("SLACK")}
    env.update(extra)
    env["NO_PROXY"] = f"{LOOPBACK},localhost"
    return env


# A direct opener: the bot is on loopback, whatever proxy the caller's environment names.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The status a GET of `url` answers, or None when nothing answers."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@dataclass
class BotProcess:
    """The bot as a child process: start it, wait until it is ready, stop it or kill it."""

    env: dict[str, str]
    log_path: Path
    port: int = 0  # where `url` points; 0: the env's PORT, or a free one (then set as PORT)
    module: str = "bot"
    args: Sequence[str] = ()
    proc: subprocess.Popen | None = None
    startup: float | None = None  # seconds from start to the first 200 from the readiness check
    _log_file: IO[bytes] | None = field(default=None, repr=False)
    _began: float = field(default=0.0, repr=False)

    @property
    def socket_mode(self) -> bool:
        return "SLACK_APP_TOKEN" in self.env

    @property
    def url(self) -> str:
        """Where Slack's requests go (HTTP mode)."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def health_url(self) -> str:
        """Where /healthz, /readyz (and /metrics) are served: PORT, or HEALTH_PORT in Socket
        Mode."""
        port = self.env["HEALTH_PORT"] if self.socket_mode else self.port
        return f"http://{LOOPBACK}:{port}"

    def start(self, wait: bool = True, timeout: float = 30.0) -> BotProcess:
        """Start the process; unless `wait` is False, return once it is ready."""
        self.port = int(self.port or self.env.get("PORT") or free_port())
        self.env.setdefault("PORT", str(self.port))  # a PORT the caller set stays as it is
        if self.socket_mode:
            self.env.setdefault("HEALTH_PORT", str(free_port()))
        self.env["NO_PROXY"] = f"{LOOPBACK},localhost"
        for name in PROXY_VARS:
            self.env.pop(name, None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        self._began = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a SIGKILL of it takes every child
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Poll the readiness check every 5 ms until it answers 200; return the seconds since
        start. Raises BotNotReady if the process exits or the time runs out."""
        assert self.proc is not None, "start() first"
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise BotNotReady(f"{self.module} exited with {code}:\n{self.tail()}")
            if http_status(self.health_url + "/readyz") == 200:
                self.startup = time.perf_counter() - self._began
                return self.startup
            time.sleep(0.005)
        self.kill()
        raise BotNotReady(
            f"{self.module} did not answer /readyz with 200 in {timeout:.0f} s:\n" + self.tail()
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Send `sig` (SIGTERM: stop as an orchestrator would, finishing what is in flight) and
        wait for the exit; SIGKILL goes to the whole process group. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if sig == signal.SIGKILL:
                self._kill_group()
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(10)
        self._close_log()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL of the whole process group, as a crash: nothing of the bot survives."""
        self.stop(signal.SIGKILL)

    def _kill_group(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def _close_log(self) -> None:
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def pids(self) -> list[int]:
        """The process and its descendants (gunicorn's worker, say), parents first."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *descendants(self.proc.pid)]


def descendants(pid: int) -> list[int]:
    """Every living descendant of `pid`, parents first, from `ps` (POSIX: Linux and macOS)."""
    try:
        listing = subprocess.run(
            ["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    kids: dict[int, list[int]] = {}
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            kids.setdefault(int(parts[1]), []).append(int(parts[0]))
    found, queue = [], list(kids.get(pid, []))
    while queue:
        child = queue.pop(0)
        found.append(child)
        queue += kids.get(child, [])
    return found
