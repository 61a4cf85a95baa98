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


@dataclass(frozen=True)
class CloudCall:
    action: str
    instance: str
    received_at: float  # time.time() in the emulator when the request arrived
    secret_id: str | None
    ok: bool


def serve() -> None:  # runs in the child process
    from standins.dbbrain import DbbrainEmulator
    from standins.slack_api import FakeSlack

    slack = FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN).start()
    dbbrain = DbbrainEmulator(keys=KEYS).start()
    # Cursors over the recorded calls, so each question reads only what is new.
    seen = {"slack": 0, "dbbrain": 0}
    counts: dict[str, int] = {}
    cards: list[Card] = []
    cloud: list[CloudCall] = []

    def catch_up() -> None:
        with slack._cond:  # the fake's own lock: read new calls without copying them all
            new = slack._calls[seen["slack"] :]
            seen["slack"] += len(new)
        for call in new:
            counts[call.method] = counts.get(call.method, 0) + 1
            if call.method == "chat.postMessage" and not call.args.get("thread_ts"):
                match = CARD_RE.match(call.args.get("text", ""))
                if match and call.response and call.response.get("ok"):
                    card = Card(
                        int(match.group(1)),
                        match.group(2),
                        str(call.args.get("channel")),
                        call.response["ts"],
                    )
                    cards.append(card)
        with dbbrain._cond:
            fresh = dbbrain.calls[seen["dbbrain"] :]
            seen["dbbrain"] += len(fresh)
        for call in fresh:
            cloud.append(
                CloudCall(
                    call.action,
                    str(call.params.get("InstanceId")),
                    call.received_at,
                    call.secret_id,
                    call.signature_ok and call.error_code is None,
                )
            )

    def wait(predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            catch_up()
            if predicate():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def reset() -> None:
        slack.reset()
        dbbrain.reset()
        seen.update(slack=0, dbbrain=0)
        counts.clear()
        cards.clear()
        cloud.clear()

    def creates() -> list[CloudCall]:
        return [c for c in cloud if c.action == "CreateKillTask"]

    def create_of(instance: str) -> CloudCall | None:
        found = (
            c for c in reversed(cloud) if c.action == "CreateKillTask" and c.instance == instance
        )
        return next(found, None)

    calls: dict[str, Callable[..., Any]] = {
        "reset": reset,
        "set_delay": dbbrain.set_delay,
        "count": lambda method: (catch_up(), counts.get(method, 0))[1],
        "cards": lambda start=0: (catch_up(), cards[start:])[1],
        "cloud_calls": lambda: (catch_up(), list(cloud))[1],
        "wait_count": lambda method, n, timeout: wait(lambda: counts.get(method, 0) >= n, timeout),
        "wait_cards": lambda n, timeout: wait(lambda: len(cards) >= n, timeout),
        "wait_creates": lambda n, timeout: wait(lambda: len(creates()) >= n, timeout),
        "wait_create_of": lambda instance, timeout: (
            wait(lambda: create_of(instance) is not None, timeout),
            create_of(instance),
        )[1],
    }

    def send(message: object) -> None:
        sys.stdout.write(json.dumps(message, default=_plain) + "\n")
        sys.stdout.flush()

    send({"slack_url": slack.url, "dbbrain_endpoint": dbbrain.endpoint})
    for line in sys.stdin:
        name, args = json.loads(line)
        if name == "stop":
            break
        try:
            send(["ok", calls[name](*args)])
        except Exception as exc:  # report it to the parent, keep serving
            send(["error", f"{type(exc).__name__}: {exc}"])
    slack.stop()
    dbbrain.stop()


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
        return self._call("wait_create_of", instance, timeout)

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
