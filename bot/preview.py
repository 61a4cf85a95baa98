"""What a kill task would hit right now: the kill task's matching rules and the preview summary.

These rules are the single place where the bot decides whether a session matches a spec; the
card's live preview and `/killtask preview` both use them. They follow DBbrain's kill task:
every given filter must hold (AND); Host is the client IP of `ip:port`; DB and Command are
"one of"; Info is a prefix of the statement; Time is a minimum (≥). System threads never match.
Where DBbrain's documentation is silent (Time > or ≥, the case of Info), the rule chosen is the
one that matches more, so a preview never shows fewer sessions than the task would kill.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import asdict, dataclass

from bot.killtask import PROTECTED_COMMANDS, PROTECTED_USERS, KillTaskSpec

STATEMENT_CHARS = 80
TOP = 5
LONGEST = 5


@dataclass(frozen=True)
class Session:
    """One row of DBbrain's process list (its values all arrive as strings)."""

    id: str
    user: str = ""
    host: str = ""
    db: str = ""
    state: str = ""
    command: str = ""
    time: int = 0
    info: str = ""

    @classmethod
    def from_row(cls, row: dict[str, object]) -> Session:
        def text(key: str) -> str:
            value = row.get(key)
            return "" if value is None else str(value)

        try:
            seconds = int(float(text("Time") or 0))
        except ValueError:
            seconds = 0
        return cls(
            id=text("ID"),
            user=text("User"),
            host=text("Host"),
            db=text("DB"),
            state=text("State"),
            command=text("Command"),
            time=seconds,
            info=text("Info"),
        )

    @property
    def client_ip(self) -> str:
        return client_ip(self.host)

    @property
    def is_system(self) -> bool:
        return self.user.lower() in PROTECTED_USERS or self.command in PROTECTED_COMMANDS


def client_ip(host: str) -> str:
    """'10.0.0.5:51234' -> '10.0.0.5'; '[::1]:3306' -> '::1'; 'localhost' stays."""
    host = host.strip()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    address, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        try:
            return str(ipaddress.ip_address(address))
        except ValueError:
            return address
    return host


def matches(spec: KillTaskSpec, session: Session) -> bool:
    """True when the kill task described by `spec` would kill `session`."""
    if session.is_system:
        return False
    if spec.user is not None and session.user != spec.user:
        return False
    if spec.host is not None and session.client_ip != spec.host:
        return False
    if spec.db and session.db not in spec.db:
        return False
    if spec.command and session.command.lower() not in {c.lower() for c in spec.command}:
        return False
    # DBbrain does not say whether Info compares case; ignoring it can only over-count.
    if spec.info is not None and not session.info.lstrip().lower().startswith(spec.info.lower()):
        return False
    return spec.time is None or session.time >= spec.time


def list_filters(spec: KillTaskSpec) -> dict[str, object]:
    """The narrowing DescribeMySqlProcessList may do for us: only filters whose meaning is
    the same there (one exact value). Everything else is read broadly and matched here."""
    filters: dict[str, object] = {}
    if spec.user is not None:
        filters["User"] = spec.user
    if len(spec.db) == 1:
        filters["DB"] = spec.db[0]
    if len(spec.command) == 1:
        filters["Command"] = spec.command[0]
    return filters


@dataclass(frozen=True)
class LongSession:
    id: str
    user: str
    host: str
    db: str
    command: str
    time: int
    statement: str | None  # None when the policy hides statements


@dataclass(frozen=True)
class LockWarning:
    """Most matching sessions wait on a lock: killing them will not help; the holder might."""

    waiting: int  # matching sessions waiting on a metadata or table lock
    state: str  # the commonest of their states, e.g. "Waiting for table metadata lock"
    db: str
    holder: LongSession | None = None  # the likely holder, when one was seen


@dataclass(frozen=True)
class DiagEvent:
    """One of DBbrain's own diagnosis events (DescribeDBDiagEvents)."""

    level: str  # "fatal", "severe", "warning", "notice" or "healthy"
    name: str
    at: str  # as DBbrain gives it, e.g. "2026-11-29 22:10:00"


SEVERITIES = {1: "fatal", 2: "severe", 3: "warning", 4: "notice", 5: "healthy"}


def diag_events(items: list[dict[str, object]]) -> tuple[DiagEvent, ...]:
    """DBbrain's diagnosis items, most severe first; healthy ones say nothing to act on."""
    events = []
    for item in items:
        try:
            severity = int(item.get("Severity") or 5)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            severity = 5
        if severity >= 5:
            continue
        name = str(item.get("DiagItem") or item.get("DiagType") or "event")
        events.append(
            (severity, DiagEvent(SEVERITIES[severity], name, str(item.get("StartTime") or "")))
        )
    return tuple(event for _, event in sorted(events, key=lambda pair: pair[0]))


@dataclass(frozen=True)
class Preview:
    read_at: float
    read: int = 0  # sessions DBbrain returned
    matched: int = 0
    truncated: bool = False  # DBbrain's answer was cut at the Limit
    by_user: tuple[tuple[str, int], ...] = ()
    by_host: tuple[tuple[str, int], ...] = ()
    by_db: tuple[tuple[str, int], ...] = ()
    by_command: tuple[tuple[str, int], ...] = ()
    longest: tuple[LongSession, ...] = ()
    protected: tuple[tuple[str, int], ...] = ()  # matching sessions of protected accounts
    error: str | None = None
    cloud_request_id: str | None = None
    by_state: tuple[tuple[str, int], ...] = ()
    lock: LockWarning | None = None
    diagnosis: tuple[DiagEvent, ...] = ()
    diagnosis_error: str | None = None  # DBbrain's diagnosis could not be read

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preview:
        def pairs(key: str) -> tuple[tuple[str, int], ...]:
            return tuple((str(k), int(v)) for k, v in data.get(key) or ())

        return cls(
            read_at=float(data["read_at"]),
            read=int(data.get("read", 0)),
            matched=int(data.get("matched", 0)),
            truncated=bool(data.get("truncated")),
            by_user=pairs("by_user"),
            by_host=pairs("by_host"),
            by_db=pairs("by_db"),
            by_command=pairs("by_command"),
            longest=tuple(LongSession(**row) for row in data.get("longest") or ()),
            protected=pairs("protected"),
            error=data.get("error"),
            cloud_request_id=data.get("cloud_request_id"),
            by_state=pairs("by_state"),
            lock=_lock_from_dict(data.get("lock")),
            diagnosis=tuple(DiagEvent(**row) for row in data.get("diagnosis") or ()),
            diagnosis_error=data.get("diagnosis_error"),
        )


def _lock_from_dict(data: dict | None) -> LockWarning | None:
    if not data:
        return None
    holder = data.get("holder")
    return LockWarning(
        waiting=int(data["waiting"]),
        state=str(data["state"]),
        db=str(data["db"]),
        holder=LongSession(**holder) if holder else None,
    )


def summarize(
    spec: KillTaskSpec,
    rows: list[dict[str, object]],
    *,
    read_at: float,
    limit: int,
    protected_users: frozenset[str] = frozenset(),
    show_statements: bool = True,
    cloud_request_id: str | None = None,
) -> Preview:
    sessions = [Session.from_row(row) for row in rows]
    hits = [s for s in sessions if matches(spec, s)]

    def top(values: list[str]) -> tuple[tuple[str, int], ...]:
        return tuple(Counter(v or "(none)" for v in values).most_common(TOP))

    longest = sorted(hits, key=lambda s: s.time, reverse=True)[:LONGEST]
    return Preview(
        read_at=read_at,
        read=len(sessions),
        matched=len(hits),
        truncated=len(sessions) >= limit,
        by_user=top([s.user for s in hits]),
        by_host=top([s.client_ip for s in hits]),
        by_db=top([s.db for s in hits]),
        by_command=top([s.command for s in hits]),
        by_state=top([s.state for s in hits]),
        lock=lock_warning(hits, sessions, show_statements),
        longest=tuple(long_session(s, show_statements) for s in longest),
        protected=top([s.user for s in hits if s.user in protected_users]),
        cloud_request_id=cloud_request_id,
    )


def _first_chars(statement: str) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= STATEMENT_CHARS else flat[: STATEMENT_CHARS - 1] + "…"


def long_session(s: Session, show_statements: bool) -> LongSession:
    statement = _first_chars(s.info) if show_statements else None
    return LongSession(s.id, s.user, s.client_ip, s.db, s.command, s.time, statement)


def waits_on_lock(session: Session) -> bool:
    """MySQL's and MariaDB's lock-wait states: "Waiting for table metadata lock", "Waiting
    for table level lock", "Waiting for global read lock" and the like."""
    state = session.state.lower()
    return state.startswith("waiting for") and "lock" in state


def lock_warning(
    hits: list[Session], sessions: list[Session], show_statements: bool = True
) -> LockWarning | None:
    """When most matching sessions wait on a lock, say so, and name the longest-running
    session on that database that is not waiting (idle ones too: an open transaction holds
    its metadata locks while it sleeps) as the likely holder."""
    waiters = [s for s in hits if waits_on_lock(s)]
    if not waiters or len(waiters) * 2 <= len(hits):
        return None
    db = Counter(s.db for s in waiters).most_common(1)[0][0]
    state = Counter(s.state for s in waiters).most_common(1)[0][0]
    candidates = [s for s in sessions if s.db == db and not s.is_system and not waits_on_lock(s)]
    # Longest first; on a tie the older connection (the lower ID) first.
    candidates.sort(key=lambda s: (-s.time, int(s.id) if s.id.isdigit() else 0))
    holder = long_session(candidates[0], show_statements) if candidates else None
    return LockWarning(len(waiters), state, db, holder)
