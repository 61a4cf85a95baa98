"""Real sessions to kill: a few dozen idle and busy connections under three throwaway accounts."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter

import pymysql

from standins.sessions import parse_mysql_url

PASSWORD = "rehearsal-only"
# account -> (idle sessions, busy sessions running SELECT SLEEP)
PLAN = {
    "rehearsal_app": (10, 8),
    "rehearsal_batch": (2, 6),
    "rehearsal_report": (6, 0),
}


class Seeder:
    """Opens the sessions and, at the end, closes them and drops the accounts again."""

    def __init__(self, admin_url: str):
        self.args = parse_mysql_url(admin_url)
        self.admin = pymysql.connect(**self.args, autocommit=True)
        self.connections: list[pymysql.connections.Connection] = []
        self.threads: list[threading.Thread] = []

    def open(self) -> int:
        with self.admin.cursor() as cursor:
            for user in PLAN:
                for host in ("%", "localhost"):  # 'localhost' wins over an anonymous account
                    cursor.execute(
                        "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, PASSWORD)
                    )
        for user, (idle, busy) in PLAN.items():
            for _ in range(idle + busy):
                self.connections.append(self._connect(user))
            for connection in self.connections[-busy:] if busy else []:
                thread = threading.Thread(target=_sleep_query, args=(connection,), daemon=True)
                thread.start()
                self.threads.append(thread)
        return len(self.connections)

    def _connect(self, user: str) -> pymysql.connections.Connection:
        args = {**self.args, "user": user, "password": PASSWORD}
        args.pop("database", None)
        return pymysql.connect(**args, autocommit=True)

    def alive(self) -> Counter[tuple[str, str]]:
        """(account, command) -> sessions of the rehearsal accounts still on the server."""
        with self.admin.cursor() as cursor:
            cursor.execute(
                "SELECT USER, COMMAND FROM information_schema.PROCESSLIST WHERE USER IN %s",
                (tuple(PLAN),),
            )
            return Counter((user, command) for user, command in cursor.fetchall())

    def close(self) -> None:
        with self.admin.cursor() as cursor:
            cursor.execute(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER IN %s", (tuple(PLAN),)
            )
            for (thread_id,) in cursor.fetchall():
                with contextlib.suppress(pymysql.MySQLError):
                    cursor.execute(f"KILL {int(thread_id)}")
            for user in PLAN:
                for host in ("%", "localhost"):
                    cursor.execute("DROP USER IF EXISTS %s@%s", (user, host))
        for thread in self.threads:
            thread.join(timeout=5)
        for connection in self.connections:
            with contextlib.suppress(Exception):
                connection.close()
        self.admin.close()


def _sleep_query(connection: pymysql.connections.Connection) -> None:
    """A busy session: runs until it is killed (the point of the rehearsal) or closed."""
    with contextlib.suppress(Exception), connection.cursor() as cursor:
        cursor.execute("SELECT SLEEP(3600) /* rehearsal: a slow report */")
