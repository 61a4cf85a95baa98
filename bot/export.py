"""`python -m bot audit`: the audit log on stdout, as CSV or JSON Lines, for a weekly review
or a SIEM. Rows are read in batches and written as they come, so memory stays flat."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

FIELDS = (
    "id", "at", "actor_id", "action", "outcome", "request_id", "channel_id", "instance_id",
    "cloud_request_id", "detail",
)  # fmt: skip
_AGO = re.compile(r"^([0-9]+)([mhdw])$")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class ExportError(ValueError):
    """A flag the export cannot read; the message says what to write instead."""


def parse_when(text: str, flag: str, now: float) -> float:
    """`7d`, `12h`, `30m`, `2w` ago; or a date (`2026-11-01`, UTC midnight) or ISO time."""
    text = text.strip()
    ago = _AGO.match(text)
    if ago:
        return now - int(ago.group(1)) * _UNIT[ago.group(2)]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ExportError(
            f"{flag} {text!r}: write a time ago such as 7d, 12h or 30m, or a date such as "
            "2026-11-01 (UTC), or 2026-11-01T08:00:00+00:00"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_args(argv: list[str], now: float) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot audit", description=__doc__)
    parser.add_argument("--since", help="7d, 12h, 30m, or a date/time (UTC unless given)")
    parser.add_argument("--until", help="the same forms; entries before this time")
    parser.add_argument("--instance", help="only entries about this instance ID")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    args = parser.parse_args(argv)
    args.since_at = parse_when(args.since, "--since", now) if args.since else None
    args.until_at = parse_when(args.until, "--until", now) if args.until else None
    return args


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def write(rows: Iterable[dict], fmt: str, out: TextIO) -> int:
    """Write each row as it comes; the number written."""
    count = 0
    writer = csv.DictWriter(out, FIELDS, extrasaction="ignore") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for row in rows:
        record = {name: row.get(name) for name in FIELDS}
        record["at"] = iso(row["at"])
        if writer is not None:
            writer.writerow(record)
        else:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


def main(argv: list[str], database_url: str, out: TextIO = sys.stdout) -> int:
    from bot.store import Store, StoreError, make_engine

    try:
        args = parse_args(argv, time.time())
    except ExportError as exc:
        print(f"killtask: {exc}", file=sys.stderr)
        return 2
    store = Store(make_engine(database_url))
    try:
        rows = store.audit_rows(args.since_at, args.until_at, args.instance)
        count = write(rows, args.format, out)
    except StoreError as exc:
        print(f"killtask: {exc}; check DATABASE_URL and that the server is up.", file=sys.stderr)
        return 1
    finally:
        store.engine.dispose()
    print(f"killtask: exported {count} audit entries", file=sys.stderr)
    return 0
