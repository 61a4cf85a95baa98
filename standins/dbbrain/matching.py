"""Which sessions DBbrain kills: a kill task's filters, and the sessions it never touches.

These rules are written here, independently of the bot's, because the emulator plays DBbrain:
a bot that got them wrong must not pass its tests by sharing the same mistake. Where DBbrain does
not document a rule, the choice here is the one that kills less, and says so.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from standins.dbbrain.params import invalid
from standins.sessions import Sessions

# Sessions DBbrain never kills: server and replication threads (Command in any case).
SYSTEM_USERS = frozenset({"system user", "event_scheduler"})
SYSTEM_COMMANDS = frozenset({"daemon", "binlog dump", "binlog dump gtid"})

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def client_ip(host: str) -> IpAddress | None:
    """The IP part of a session's Host: ``ip:port`` for TCP clients, ``localhost`` for sockets."""
    if (whole := _ip(host)) is not None:
        return whole  # a bare (IPv6) address: its last group is not a port
    address, _, port = host.rpartition(":")
    return _ip(address) if port.isdigit() else None


def session_seconds(text: str) -> int:
    """A process row's Time (a string, as DBbrain answers it) in whole seconds; 0 if unreadable."""
    try:
        return int(float(text or 0))
    except ValueError:
        return 0


@dataclass(frozen=True)
class KillFilter:
    """CreateKillTask's filters; a session must pass every one that was given (AND)."""

    user: str | None = None
    host: IpAddress | None = None
    dbs: frozenset[str] | None = None
    commands: frozenset[str] | None = None  # lower case
    info: str | None = None
    infos: tuple[str, ...] = ()
    time: int | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> KillFilter:
        for name in ("User", "Host", "DB", "Command", "Info"):
            if name in params and not params[name].strip():
                raise invalid(name, "must not be empty")  # stricter than "no filter": catch bugs

        def names(name: str) -> frozenset[str] | None:
            if name not in params:
                return None
            items = [item.strip() for item in params[name].split(",")]
            if not all(items):
                raise invalid(name, "has an empty name in its comma-separated list")
            return frozenset(items)

        host = None
        if "Host" in params and (host := _ip(params["Host"])) is None:
            raise invalid("Host", "is not an IP address")
        if params.get("Time", 0) < 0:
            raise invalid("Time", "must not be negative")
        infos = tuple(params.get("Infos", ()))
        if not all(k.strip() for k in infos):
            raise invalid("Infos", "must not contain an empty keyword")
        commands = names("Command")
        return cls(
            user=params.get("User"),
            host=host,
            dbs=names("DB"),
            commands=None if commands is None else frozenset(c.lower() for c in commands),
            info=params.get("Info"),
            infos=infos,
            time=params.get("Time"),
        )

    def matches(self, row: Mapping[str, str]) -> bool:
        statement = row["Info"].lstrip()
        return (
            (self.user is None or row["User"] == self.user)
            and (self.host is None or client_ip(row["Host"]) == self.host)
            and (self.dbs is None or row["DB"] in self.dbs)
            and (self.commands is None or row["Command"].lower() in self.commands)
            and (self.info is None or statement.startswith(self.info))
            # DBbrain does not say whether several Infos are AND or OR; AND kills less.
            and all(keyword in statement for keyword in self.infos)
            and (self.time is None or session_seconds(row["Time"]) >= self.time)
        )


def is_system(row: Mapping[str, str]) -> bool:
    return row["User"] in SYSTEM_USERS or row["Command"].lower() in SYSTEM_COMMANDS


def killable(backend: Sessions, row: Mapping[str, str]) -> bool:
    """Never the server's own threads, nor the connections and account we log in with."""
    return not is_system(row) and not backend.is_own(row)
