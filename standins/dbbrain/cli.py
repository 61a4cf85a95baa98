"""Run the emulator by hand, from flags or a config file (see the package docstring).

Config values name each instance's sessions: a MySQL URL (real sessions on that server), a list
of process rows (simulated sessions), or null (an instance with no sessions).
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import Any

from standins.dbbrain.emulator import DbbrainEmulator
from standins.sessions import MySQLSessions, Sessions, SimulatedSessions

DESCRIPTION = "A local emulator of Tencent Cloud DBbrain API 3.0 (version 2021-05-27) for tests."


def backend_from(value: object) -> Sessions | None:
    """A config value as a backend: a MySQL URL, a list of simulated rows, or null (none)."""
    if value is None:
        return None
    if isinstance(value, str):
        return MySQLSessions(value)
    if isinstance(value, list) and all(isinstance(row, dict) for row in value):
        return SimulatedSessions(value)
    raise ValueError(f"an instance is a MySQL URL, a list of process rows or null, not {value!r}")


def load_config(path: str) -> dict[str, Any]:
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml  # only for YAML configs

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict) or set(data) - {"keys", "instances", "kill_interval"}:
        raise ValueError(f"{path}: want a mapping with keys, instances and kill_interval")
    return data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m standins.dbbrain", description=DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--key", action="append", default=[], help="SecretId=SecretKey")
    parser.add_argument(
        "--instance",
        action="append",
        default=[],
        help="allowed instance id, or ID=mysql://user:password@host:port/ (repeatable)",
    )
    parser.add_argument("--config", help="JSON or YAML file with keys, instances, kill_interval")
    parser.add_argument("--kill-interval", type=float, help="seconds between kill task sweeps")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = load_config(args.config) if args.config else {}
    keys = dict(config.get("keys") or {}) | dict(k.split("=", 1) for k in args.key)
    instances = dict(config.get("instances") or {})
    for item in args.instance:
        name, _, url = item.partition("=")
        instances[name] = url or None
    backends = {name: b for name, value in instances.items() if (b := backend_from(value))}
    emulator = DbbrainEmulator(
        keys or None,
        args.host,
        args.port,
        instances=instances or None,
        backends=backends,
        kill_interval=args.kill_interval or config.get("kill_interval", 1.0),
    ).start()
    emulator.set_delay(args.delay)
    print(f"DBbrain emulator listening on {emulator.endpoint}", flush=True)
    for name, backend in sorted(backends.items()):
        print(f"  {name}: {backend!r}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emulator.stop()
