"""The fake Slack Web API and the DBbrain emulator in a process of their own.

The load generator, the stand-ins and the bot each get their own interpreter (and GIL), so the
stand-ins answering the bot's Slack and DBbrain calls do not steal the load generator's time,
nor it theirs. The parent drives them through a pipe with a few small calls.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

BOT_TOKEN = "xoxb-bench-token"
APP_TOKEN = "xapp-bench-token"
# One CAM key per bot process, so the emulator can tell whose CreateKillTask it received.
KEYS = {"AKIDBENCHA": "bench-secret-a", "AKIDBENCHB": "bench-secret-b"}

CARD_RE = re.compile(r"Kill-task request #(\d+) on (\S+): ")


@dataclass(frozen=True)
class Card:
    request_id: int
    instance: str
    channel: str
    ts: str
    at: float  # time.time() in the fake Slack when chat.postMessage arrived


@dataclass(frozen=True)
class CloudCall:
    action: str
    instance: str
    received_at: float  # time.time() in the emulator when the request arrived
    secret_id: str | None
    ok: bool


class Recorder:
    """In the child process: the stand-ins, and what they received, read as it comes in."""

    ASKED = ("reset", "set_delay", "count", "cards", "cloud_calls", "wait_count", "wait_cards")
    ASKED += ("wait_creates", "wait_call_of", "wait_cards_of", "wait_calls_of")

    def __init__(self) -> None:
        from standins.dbbrain import DbbrainEmulator
        from standins.slack_api import FakeSlack

        self.slack = FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN).start()
        self.dbbrain = DbbrainEmulator(keys=KEYS).start()
        # Cursors over the recorded calls, so each question reads only what is new.
        self.seen = {"slack": 0, "dbbrain": 0}
        self.counts: dict[str, int] = {}
        self._cards: list[Card] = []
        self.cloud: list[CloudCall] = []

    def catch_up(self) -> None:
        with self.slack._cond:  # the fake's own lock: read new calls without copying them all
            new = self.slack._calls[self.seen["slack"] :]
            self.seen["slack"] += len(new)
        for call in new:
            self.counts[call.method] = self.counts.get(call.method, 0) + 1
            if call.method == "chat.postMessage" and not call.args.get("thread_ts"):
                match = CARD_RE.match(call.args.get("text", ""))
                if match and call.response and call.response.get("ok"):
                    channel, ts = str(call.args.get("channel")), call.response["ts"]
                    self._cards.append(
                        Card(int(match.group(1)), match.group(2), channel, ts, call.at)
                    )
        with self.dbbrain._cond:
            fresh = self.dbbrain.calls[self.seen["dbbrain"] :]
            self.seen["dbbrain"] += len(fresh)
        for c in fresh:
            ok = c.signature_ok and c.error_code is None
            instance = str(c.params.get("InstanceId"))
            self.cloud.append(CloudCall(c.action, instance, c.received_at, c.secret_id, ok))

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.catch_up()
            if predicate():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def reset(self) -> None:
        self.slack.reset()
        self.dbbrain.reset()
        self.seen.update(slack=0, dbbrain=0)
        self.counts.clear()
        self._cards.clear()
        self.cloud.clear()

    def set_delay(self, seconds: float) -> None:
        self.dbbrain.set_delay(seconds)

    def count(self, method: str) -> int:
        self.catch_up()
        return self.counts.get(method, 0)

    def cards(self, start: int = 0) -> list[Card]:
        self.catch_up()
        return self._cards[start:]

    def cloud_calls(self) -> list[CloudCall]:
        self.catch_up()
        return list(self.cloud)

    def call_of(self, action: str, instance: str) -> CloudCall | None:
        return next((c for c in self.cloud if c.action == action and c.instance == instance), None)

    def wait_count(self, method: str, n: int, timeout: float) -> bool:
        return self.wait(lambda: self.counts.get(method, 0) >= n, timeout)

    def wait_cards(self, n: int, timeout: float) -> bool:
        return self.wait(lambda: len(self._cards) >= n, timeout)

    def wait_creates(self, n: int, timeout: float) -> bool:
        return self.wait(lambda: self.count_of("CreateKillTask") >= n, timeout)

    def wait_call_of(self, action: str, instance: str, timeout: float) -> CloudCall | None:
        self.wait(lambda: self.call_of(action, instance) is not None, timeout)
        return self.call_of(action, instance)

    def wait_cards_of(self, instances: list[str], timeout: float) -> bool:
        return self.wait(lambda: set(instances) <= {c.instance for c in self._cards}, timeout)

    def wait_calls_of(self, action: str, instances: list[str], timeout: float) -> bool:
        return self.wait(lambda: set(instances) <= self.instances_of(action), timeout)

    def count_of(self, action: str) -> int:
        return sum(c.action == action for c in self.cloud)

    def instances_of(self, action: str) -> set[str]:
        return {c.instance for c in self.cloud if c.action == action}


def serve() -> None:  # runs in the child process
    recorder = Recorder()

    def send(message: object) -> None:
        sys.stdout.write(json.dumps(message, default=_plain) + "\n")
        sys.stdout.flush()

    send({"slack_url": recorder.slack.url, "dbbrain_endpoint": recorder.dbbrain.endpoint})
    for line in sys.stdin:
        name, args = json.loads(line)
        if name == "stop":
            break
        try:
            if name not in Recorder.ASKED:
                raise ValueError(f"unknown call {name!r}")
            send(["ok", getattr(recorder, name)(*args)])
        except Exception as exc:  # report it to the parent, keep serving
            send(["error", f"{type(exc).__name__}: {exc}"])
    recorder.slack.stop()
    recorder.dbbrain.stop()


def _plain(value: object) -> object:
    if isinstance(value, Card | CloudCall):
        return {"kind": type(value).__name__, **value.__dict__}
    raise TypeError(type(value).__name__)


def _revive(value: Any) -> Any:
    if isinstance(value, list):
        return [_revive(v) for v in value]
    if isinstance(value, dict) and value.get("kind") in ("Card", "CloudCall"):
        kind = Card if value.pop("kind") == "Card" else CloudCall
        return kind(**value)
    return value


class Standins:
    """The parent's handle on the stand-ins process."""

    def __init__(
        self, cwd: str | None = None, env: dict[str, str] | None = None, log: Any = None
    ) -> None:
        # Killed bots leave the fake Slack's handlers with broken pipes: their tracebacks go to
        # `log` (a file), not to the benchmark's output.
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.standins"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
        )
        hello = self._read()
        self.slack_url: str = hello["slack_url"]
        self.dbbrain_endpoint: str = hello["dbbrain_endpoint"]

    def _read(self) -> Any:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the stand-ins process exited ({self._proc.poll()})")
        return json.loads(line)

    def _call(self, name: str, *args: Any) -> Any:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps([name, list(args)]) + "\n")
        self._proc.stdin.flush()
        status, value = self._read()
        if status != "ok":
            raise RuntimeError(f"stand-ins: {name}: {value}")
        return _revive(value)

    def reset(self) -> None:
        self._call("reset")

    def set_delay(self, seconds: float) -> None:
        self._call("set_delay", seconds)

    def count(self, method: str) -> int:
        return self._call("count", method)

    def cards(self, start: int = 0) -> list[Card]:
        return self._call("cards", start)

    def cloud_calls(self) -> list[CloudCall]:
        """Every DBbrain call received since the last reset, in arrival order."""
        return self._call("cloud_calls")

    def wait_count(self, method: str, n: int, timeout: float) -> bool:
        return self._call("wait_count", method, n, timeout)

    def wait_cards(self, n: int, timeout: float) -> bool:
        return self._call("wait_cards", n, timeout)

    def wait_creates(self, n: int, timeout: float) -> bool:
        return self._call("wait_creates", n, timeout)

    def wait_create_of(self, instance: str, timeout: float) -> CloudCall | None:
        return self.wait_call_of("CreateKillTask", instance, timeout)

    def wait_call_of(self, action: str, instance: str, timeout: float) -> CloudCall | None:
        """The first `action` call for `instance` since the last reset, waiting for it."""
        return self._call("wait_call_of", action, instance, timeout)

    def wait_cards_of(self, instances: list[str], timeout: float) -> bool:
        """Wait until every one of `instances` has a card."""
        return self._call("wait_cards_of", list(instances), timeout)

    def wait_calls_of(self, action: str, instances: list[str], timeout: float) -> bool:
        return self._call("wait_calls_of", action, list(instances), timeout)

    def card_of(self, instance: str, cards: list[Card] | None = None) -> Card | None:
        """The first card posted for `instance` (from `cards`, or asked now)."""
        found = self.cards() if cards is None else cards
        return next((c for c in found if c.instance == instance), None)

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(json.dumps(["stop", []]) + "\n")
                self._proc.stdin.close()
                self._proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait(5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> Standins:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    serve()
