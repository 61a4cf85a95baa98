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
        longest=tuple(
            LongSession(
                id=s.id,
                user=s.user,
                host=s.client_ip,
                db=s.db,
                command=s.command,
                time=s.time,
                statement=_first_chars(s.info) if show_statements else None,
            )
            for s in longest
        ),
        protected=top([s.user for s in hits if s.user in protected_users]),
        cloud_request_id=cloud_request_id,
    )


def _first_chars(statement: str) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= STATEMENT_CHARS else flat[: STATEMENT_CHARS - 1] + "…"
