"""Where the DBbrain emulator's sessions come from: a MySQL/MariaDB server or rows in memory.

A backend answers ``list()`` with rows shaped like DBbrain's ProcessList (every value a string)
and ``kill(thread_id)`` with whether a session was killed. ``is_own(row)`` names the sessions a
backend must never kill: its own connections and the account it logs in with.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    import pymysql

PROCESS_FIELDS = ("ID", "User", "Host", "DB", "State", "Command", "Time", "Info", "SqlType")
PROCESSLIST_SQL = (
    "SELECT ID, USER, HOST, DB, COMMAND, TIME, STATE, INFO FROM information_schema.PROCESSLIST"
)
URL_SCHEMES = ("mysql", "mariadb", "mysql+pymysql")
# MySQL error codes meaning "that thread cannot be killed" rather than "the server is gone".
NO_SUCH_THREAD, NOT_THREAD_OWNER = 1094, 1095


class SessionsError(Exception):
    """The backend could not be read or written (server down, bad credentials, ...)."""


def process_row(row: Mapping[str, Any]) -> dict[str, str]:
    """A row as DBbrain answers it: exactly PROCESS_FIELDS, every value a string ("" for null)."""
    return {k: "" if row.get(k) is None else str(row[k]) for k in PROCESS_FIELDS}


class Sessions(ABC):
    """The sessions of one instance."""

    @abstractmethod
    def list(self) -> list[dict[str, str]]: ...

    @abstractmethod
    def kill(self, thread_id: int) -> bool:
        """Kill one session; False when it is gone, protected or cannot be killed."""

    def is_own(self, row: Mapping[str, str]) -> bool:
        """True for the backend's own connections and login account."""
        return False

    def close(self) -> None:  # noqa: B027 - optional: most backends hold nothing
        """Release connections; the backend may be used again afterwards."""


class SimulatedSessions(Sessions):
    """Rows held in memory; a killed row disappears, so a rehearsal still "kills" something."""

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        self._lock = threading.Lock()  # list() and kill() come from HTTP and task threads
        self._rows = [process_row(row) for row in rows]

    def list(self) -> list[dict[str, str]]:
        with self._lock:
            return [dict(row) for row in self._rows]

    def kill(self, thread_id: int) -> bool:
        with self._lock:
            before = len(self._rows)
            self._rows = [row for row in self._rows if row["ID"] != str(thread_id)]
            return len(self._rows) < before

    def __repr__(self) -> str:
        return f"SimulatedSessions({len(self._rows)} rows)"


def parse_mysql_url(url: str) -> dict[str, Any]:
    """``mysql://user:password@host:port/db?unix_socket=/path`` as PyMySQL connect() arguments."""
    parts = urlsplit(url)
    if parts.scheme not in URL_SCHEMES:
        raise ValueError(f"not a MySQL URL (want {'/'.join(URL_SCHEMES)}://...): {url!r}")
    args: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
    }
    if database := unquote(parts.path.lstrip("/")):
        args["database"] = database
    if socket := parse_qs(parts.query).get("unix_socket"):
        args["unix_socket"] = socket[0]
    return args


class MySQLSessions(Sessions):
    """The live process list of a MySQL/MariaDB server, through one PyMySQL connection.

    The login account needs the PROCESS privilege to see other accounts' sessions and
    SUPER/CONNECTION ADMIN to kill them. The connection is opened on first use and reopened
    after a failure, so the emulator starts even when the server is not up yet.
    """

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        self.url = url
        self._args = parse_mysql_url(url)
        self.user: str = self._args["user"]
        self._timeout = connect_timeout
        self._lock = threading.Lock()  # a PyMySQL connection is not thread-safe
        self._conn: pymysql.Connection | None = None
        self.own_ids: set[int] = set()  # every connection id this backend has used

    def __repr__(self) -> str:
        args = self._args
        return f"MySQLSessions({args['user']}@{args['host']}:{args['port']})"

    def _run(self, sql: str) -> list[tuple[Any, ...]]:
        import pymysql  # only needed with a real server; the emulator works without it

        with self._lock:
            try:
                if self._conn is None:
                    timeout = self._timeout
                    self._conn = pymysql.connect(
                        **self._args,
                        autocommit=True,
                        connect_timeout=timeout,
                        read_timeout=timeout,
                        write_timeout=timeout,
                    )
                    self.own_ids.add(self._conn.thread_id())
                with self._conn.cursor() as cursor:
                    cursor.execute(sql)
                    return list(cursor.fetchall())
            except pymysql.err.OperationalError as e:
                if e.args and e.args[0] in (NO_SUCH_THREAD, NOT_THREAD_OWNER):
                    raise  # the connection is fine; the caller decides
                self._drop()
                raise SessionsError(f"{self!r}: {e}") from e
            except pymysql.err.Error as e:
                raise SessionsError(f"{self!r}: {e}") from e

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already broken; we only want it gone
                self._conn.close()
            self._conn = None

    def list(self) -> list[dict[str, str]]:
        rows = []
        for id_, user, host, db, command, seconds, state, info in self._run(PROCESSLIST_SQL):
            if isinstance(info, bytes):
                info = info.decode(errors="replace")
            # DBbrain's SqlType ("Select", "Insert", ...); we take the statement's first word.
            sql_type = info.split(None, 1)[0].upper() if info and info.strip() else ""
            fields = (id_, user, host, db, state, command, seconds, info, sql_type)
            rows.append(process_row(dict(zip(PROCESS_FIELDS, fields, strict=True))))
        return rows

    def kill(self, thread_id: int) -> bool:
        import pymysql

        if thread_id in self.own_ids:
            return False
        try:
            self._run(f"KILL {int(thread_id)}")
        except pymysql.err.OperationalError:
            return False  # no such thread (already gone) or not ours to kill
        return True

    def is_own(self, row: Mapping[str, str]) -> bool:
        return row.get("User") == self.user or row.get("ID", "") in {str(i) for i in self.own_ids}

    def close(self) -> None:
        with self._lock:
            self._drop()
