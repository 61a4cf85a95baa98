"""A made-up process list for rehearsals where no MySQL server can be reached."""

from __future__ import annotations

import random


def simulated_rows(seed: int = 7) -> list[dict[str, object]]:
    """A few dozen sessions under several accounts, some idle and some busy."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = [
        {"ID": 1, "User": "system user", "Host": "", "DB": "", "Command": "Connect", "Time": 86400,
         "State": "Slave has read all relay log", "Info": ""},
        {"ID": 2, "User": "event_scheduler", "Host": "localhost", "DB": "", "Command": "Daemon",
         "Time": 86400, "State": "Waiting on empty queue", "Info": ""},
    ]  # fmt: skip
    plan = [
        ("rehearsal_app", "orders", "Sleep", 12, ""),
        ("rehearsal_app", "orders", "Query", 10, "SELECT * FROM orders WHERE status = 'open'"),
        ("rehearsal_batch", "billing", "Query", 6, "UPDATE invoices SET total = total * 1.0"),
        ("rehearsal_report", "orders", "Sleep", 6, ""),
    ]
    next_id = 100
    for user, db, command, count, info in plan:
        for _ in range(count):
            port = rng.randint(30_000, 60_000)
            rows.append(
                {
                    "ID": next_id,
                    "User": user,
                    "Host": f"10.0.{rng.randint(0, 3)}.{rng.randint(2, 250)}:{port}",
                    "DB": db,
                    "Command": command,
                    "Time": rng.randint(1, 900),
                    "State": "User sleep" if command == "Query" else "",
                    "Info": info,
                }
            )
            next_id += 1
    return rows
