"""The kill-task spec: its fields, the one-line form, validation and the plain-words summary.

Pure domain code: it knows DBbrain's rules for CreateKillTask but imports nothing from Slack,
Tencent or SQLAlchemy, so the card, the modal and the cloud call all read the same spec.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import unicodedata
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields

PRODUCTS = ("mysql", "cynosdb")
PRODUCT_NAMES = {"mysql": "TencentDB for MySQL", "cynosdb": "TDSQL-C for MySQL"}
UNTIL_STOPPED = -1
ONCE = 0  # a one-shot kill: the matching sessions are killed once, right after approval
ONCE_BATCH = 100  # KillMySqlThreads takes at most 100 thread IDs per Prepare
MAX_DURATION = 86_400  # a longer task should be "until stopped", watched and stopped by hand
MAX_TIME = 31_536_000
MAX_INFO = 500
MAX_REASON = 500

# MySQL's thread command names (SHOW PROCESSLIST's Command column), in their canonical spelling.
MYSQL_COMMANDS = (
    "Sleep", "Query", "Connect", "Execute", "Prepare", "Fetch", "Init DB", "Field List",
    "Close stmt", "Reset stmt", "Set option", "Long Data", "Change user", "Ping", "Quit",
    "Statistics", "Processlist", "Kill", "Refresh", "Debug", "Create DB", "Drop DB", "Time",
    "Delayed insert", "Table Dump", "Connect Out", "Register Slave", "Binlog Dump",
    "Binlog Dump GTID", "Daemon", "Error",
)  # fmt: skip
_COMMANDS_BY_KEY = {c.lower(): c for c in MYSQL_COMMANDS}

# Replication and server threads: killing them breaks replicas or the server, whatever the role.
PROTECTED_COMMANDS = frozenset({"Binlog Dump", "Binlog Dump GTID", "Register Slave", "Daemon"})
PROTECTED_USERS = frozenset({"system user", "event_scheduler"})
KILLABLE_COMMANDS = frozenset(MYSQL_COMMANDS) - PROTECTED_COMMANDS

# Below these a filter reaches (nearly) every session, so the request needs `kill_all`.
MIN_INFO = 4  # characters of a statement prefix, not counting the LIKE wildcards % and _
MIN_TIME_ALONE = 60  # seconds, when session time is the only filter

FILTER_FIELDS = ("host", "db", "command", "info", "user", "time")
LINE_KEYS = ("duration", "product", *FILTER_FIELDS, "reason")
FIELD_LABELS = {
    "instance_id": "instance",
    "product": "product",
    "duration": "duration",
    "host": "client host",
    "db": "databases",
    "command": "commands",
    "info": "statement prefix",
    "user": "account",
    "time": "minimum session time",
    "reason": "reason",
}

USAGE = (
    "/killtask <InstanceId> duration=<10m|1h|600|until-stopped|once> [user=app] [host=10.0.0.5] "
    '[db=orders,billing] [command=Query,Sleep] [info="SELECT * FROM orders"] [time=30] '
    '[product=mysql|cynosdb] [reason="..."]'
)

_INSTANCE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")
_DB_RE = re.compile(r"^[A-Za-z0-9_$\-]{1,64}$")
# At most 12 digits: far above any limit, and int() never meets Python's 4300-digit cap.
_DURATION_RE = re.compile(
    r"^(\d{1,12})\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?)?$"
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
_UNTIL_STOPPED_WORDS = {"-1", "until-stopped", "until_stopped", "until stopped", "forever"}
_ONCE_WORDS = {"once", "one-shot", "oneshot", "now"}
_SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})


class SpecError(ValueError):
    """One or more fields are invalid; `errors` maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{FIELD_LABELS.get(k, k)}: {v}" for k, v in errors.items()))


@dataclass(frozen=True)
class KillTaskSpec:
    """What CreateKillTask will be asked to do; every field is already validated."""

    instance_id: str
    duration: int
    product: str = "mysql"
    host: str | None = None
    db: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    info: str | None = None
    user: str | None = None
    time: int | None = None
    reason: str | None = None

    @property
    def has_filters(self) -> bool:
        return any(getattr(self, name) not in (None, ()) for name in FILTER_FIELDS)

    @property
    def until_stopped(self) -> bool:
        return self.duration == UNTIL_STOPPED

    @property
    def once(self) -> bool:
        """A one-shot kill (KillMySqlThreads) rather than a kill task that keeps running."""
        return self.duration == ONCE

    def cloud_params(self) -> dict[str, object]:
        """The CreateKillTask parameters, exactly as sent; absent filters are left out."""
        params: dict[str, object] = {
            "InstanceId": self.instance_id,
            "Duration": self.duration,
            "Product": self.product,
        }
        if self.host:
            params["Host"] = self.host
        if self.db:
            params["DB"] = ",".join(self.db)
        if self.command:
            params["Command"] = ",".join(self.command)
        if self.info:
            params["Info"] = self.info
        if self.user:
            params["User"] = self.user
        if self.time is not None:
            params["Time"] = self.time
        return params

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {f: getattr(self, f) for f in SPEC_FIELDS}
        data["db"] = list(self.db)
        data["command"] = list(self.command)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> KillTaskSpec:
        """Rebuild a stored spec; stored specs were validated when they were filed."""
        return cls(
            instance_id=str(data["instance_id"]),
            duration=int(data["duration"]),  # type: ignore[arg-type]
            product=str(data.get("product") or "mysql"),
            host=data.get("host") or None,  # type: ignore[arg-type]
            db=tuple(data.get("db") or ()),  # type: ignore[arg-type]
            command=tuple(data.get("command") or ()),  # type: ignore[arg-type]
            info=data.get("info") or None,  # type: ignore[arg-type]
            user=data.get("user") or None,  # type: ignore[arg-type]
            time=None if data.get("time") is None else int(data["time"]),  # type: ignore[arg-type]
            reason=data.get("reason") or None,  # type: ignore[arg-type]
        )


SPEC_FIELDS = tuple(f.name for f in dataclass_fields(KillTaskSpec))

# ---------------------------------------------------------------- field parsers


def _clean(value: str | None) -> str:
    return "" if value is None else value.strip()


def unescape_slack(text: str) -> str:
    """Slack escapes exactly &, < and > in command text; undo just those, once."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _has_control_chars(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value)


def parse_instance_id(raw: str | None) -> str:
    value = _clean(raw)
    if not value:
        raise ValueError("is required, e.g. cdb-abc12345 or cynosdbmysql-ins-abc12345")
    if len(value) > 64 or not _INSTANCE_RE.match(value):
        raise ValueError(
            "must be a Tencent Cloud instance ID such as cdb-abc12345 "
            "(lowercase letters, digits and dashes)"
        )
    return value


def parse_product(raw: str | None) -> str:
    value = _clean(raw).lower() or "mysql"
    if value not in PRODUCTS:
        raise ValueError("must be mysql (TencentDB for MySQL) or cynosdb (TDSQL-C for MySQL)")
    return value


def parse_duration(raw: str | None) -> int:
    value = _clean(raw).lower()
    if not value:
        raise ValueError(
            "is required: how long to keep killing, e.g. 10m, 1h, until-stopped, or once"
        )
    if value in _UNTIL_STOPPED_WORDS:
        return UNTIL_STOPPED
    if value in _ONCE_WORDS:
        return ONCE
    match = _DURATION_RE.match(value)
    if not match:
        raise ValueError("must be seconds (600), a time like 10m or 2h, until-stopped, or once")
    seconds = int(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s")[0]]
    if not 1 <= seconds <= MAX_DURATION:
        raise ValueError("must be between 1 second and 24 hours; for longer, use until-stopped")
    return seconds


def parse_time(raw: str | None) -> int | None:
    value = _clean(raw).lower()
    if not value:
        return None
    match = _DURATION_RE.match(value)
    if not match:
        raise ValueError("must be whole seconds a session has run, e.g. 30 or 5m")
    seconds = int(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s")[0]]
    if seconds > MAX_TIME:
        raise ValueError("must be at most one year in seconds")
    return seconds


def parse_host(raw: str | None) -> str | None:
    value = _clean(raw)
    if not value:
        return None
    try:
        if "%" in value:  # an IPv6 zone index (fe80::1%eth0) may hold any text at all
            raise ValueError(value)
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(
            "must be one client IP address such as 10.0.0.5 (no port, no host name)"
        ) from None


def _split_list(raw: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if raw is None:
        return []
    items = raw if isinstance(raw, list | tuple) else _clean(raw).split(",")
    return [_clean(item) for item in items if _clean(item)]


def parse_dbs(raw: str | list[str] | None) -> tuple[str, ...]:
    names = _split_list(raw)
    for name in names:
        if not _DB_RE.match(name):
            raise ValueError(
                f"'{name[:40]}' is not a database name (letters, digits, _ $ -, up to 64); "
                "separate several with commas"
            )
    return tuple(dict.fromkeys(names))


def parse_commands(raw: str | list[str] | None) -> tuple[str, ...]:
    commands = []
    for item in _split_list(raw):
        canonical = _COMMANDS_BY_KEY.get(" ".join(item.split()).lower())
        if canonical is None:
            raise ValueError(
                f"'{item[:40]}' is not a MySQL thread command; use names from SHOW PROCESSLIST "
                "such as Query, Sleep, Execute, Connect"
            )
        if canonical in PROTECTED_COMMANDS:
            raise ValueError(
                f"{canonical} threads belong to replication or the server itself and are never "
                "killed; remove it"
            )
        commands.append(canonical)
    return tuple(dict.fromkeys(commands))


def parse_info(raw: str | None) -> str | None:
    value = _clean(raw)
    if not value:
        return None
    if len(value) > MAX_INFO:
        raise ValueError(f"must be at most {MAX_INFO} characters")
    if _has_control_chars(value):
        raise ValueError("must be plain text without control characters")
    return value


def parse_user(raw: str | None, protected_users: frozenset[str] = frozenset()) -> str | None:
    value = _clean(raw)
    if not value:
        return None
    if len(value) > 32 or _has_control_chars(value) or "," in value:
        raise ValueError("must be one MySQL account name of at most 32 characters")
    if value.lower() in PROTECTED_USERS | {u.lower() for u in protected_users}:
        raise ValueError(
            f"'{value}' is a protected account (server, replication or monitoring) and is "
            "never killed"
        )
    return value


def parse_reason(raw: str | None) -> str | None:
    value = _clean(raw)
    if not value:
        return None
    if len(value) > MAX_REASON:
        raise ValueError(f"must be at most {MAX_REASON} characters")
    return "".join(ch if not _has_control_chars(ch) else " " for ch in value)


# ---------------------------------------------------------------- whole spec


def build_spec(
    fields: dict[str, object], protected_users: frozenset[str] = frozenset()
) -> KillTaskSpec:
    """Validate every field, collecting all problems so a modal can mark each one."""
    errors: dict[str, str] = {}
    values: dict[str, object] = {}
    parsers = {
        "instance_id": parse_instance_id,
        "product": parse_product,
        "duration": parse_duration,
        "host": parse_host,
        "db": parse_dbs,
        "command": parse_commands,
        "info": parse_info,
        "user": lambda raw: parse_user(raw, protected_users),
        "time": parse_time,
        "reason": parse_reason,
    }
    for name, parse in parsers.items():
        try:
            values[name] = parse(fields.get(name))  # type: ignore[operator]
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise SpecError(errors)
    return KillTaskSpec(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CommandLine:
    """The one-line form split into a sub-command and its arguments."""

    verb: str  # "file", "help", "list", "stop"
    fields: dict[str, str]
    flags: frozenset[str] = frozenset()


_SUBCOMMANDS = {"help", "list", "stop", "preview"}


def split_line(text: str) -> CommandLine:
    """Split `/killtask` text: shell quoting, case-insensitive keys, smart quotes forgiven."""
    text = unescape_slack(_clean(text)).translate(_SMART_QUOTES)
    try:
        tokens = shlex.split(text)
    except ValueError:
        problem = "a quote is not closed; put quotes around the whole value"
        raise SpecError({"line": problem}) from None
    if not tokens:
        return CommandLine("modal", {})
    verb = "file"
    if tokens[0].lower() in _SUBCOMMANDS:
        verb = tokens.pop(0).lower()
        if verb in ("help", "list"):
            return CommandLine(verb, {})
    fields: dict[str, str] = {}
    flags: set[str] = set()
    for position, token in enumerate(tokens):
        if token.startswith("--"):
            flags.add(token[2:].lower().replace("_", "-"))
            continue
        key, sep, value = token.partition("=")
        if not sep:
            if position == 0:
                fields["instance_id"] = token
                continue
            raise SpecError({"line": f"'{token[:40]}' is not key=value; quote values with spaces"})
        key = key.strip().lower().replace("-", "_")
        if key in ("instance", "instanceid", "instance_id"):
            key = "instance_id"
        elif key not in LINE_KEYS:
            raise SpecError(
                {"line": f"unknown key '{key[:30]}'; known keys are {', '.join(LINE_KEYS)}"}
            )
        if key in fields:
            raise SpecError({key: "is given twice; give it once"})
        fields[key] = value
    return CommandLine(verb, fields, frozenset(flags))


def broad_reason(spec: KillTaskSpec) -> str | None:
    """Why a spec reaches so many sessions that only a role with `kill_all` may run it."""
    if not spec.has_filters:
        return "it has no filter, so it kills every session on the instance"
    if spec.info is not None and _literal_chars(spec.info) < MIN_INFO:
        return (
            f"its statement prefix has fewer than {MIN_INFO} characters other than the "
            "wildcards % and _, so it matches almost any statement"
        )
    narrowing = (n for n in FILTER_FIELDS if n not in ("command", "time"))
    if any(getattr(spec, n) not in (None, ()) for n in narrowing):
        return None
    # What is left: a command list, a session time, or both.
    if set(spec.command) >= KILLABLE_COMMANDS:
        return "its command list names every command that may be killed, which narrows nothing"
    if not spec.command and spec.time is not None and spec.time < MIN_TIME_ALONE:
        return (
            f"its only filter is a session time under {MIN_TIME_ALONE} s, which most sessions reach"
        )
    return None


def _literal_chars(info: str) -> int:
    """How many characters of a statement prefix narrow it: DBbrain may match Info with SQL
    LIKE, where % and _ match anything."""
    return sum(1 for ch in info if ch not in "%_")


# ---------------------------------------------------------------- plain words


def describe_duration(seconds: int) -> str:
    if seconds == UNTIL_STOPPED:
        return "until stopped by hand"
    if seconds == ONCE:
        return "once"
    parts = []
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if secs or not parts:
        parts.append(f"{secs} s")
    return " ".join(parts)


def filter_phrases(spec: KillTaskSpec) -> list[str]:
    phrases = []
    if spec.user:
        phrases.append(f"account = {spec.user}")
    if spec.host:
        phrases.append(f"client host = {spec.host}")
    if spec.db:
        phrases.append(_one_of("database", spec.db))
    if spec.command:
        phrases.append(_one_of("command", spec.command))
    if spec.info:
        phrases.append(f'statement starts with "{spec.info}"')
    if spec.time is not None:
        phrases.append(f"running ≥ {spec.time} s")
    return phrases


def _one_of(noun: str, values: tuple[str, ...]) -> str:
    if len(values) == 1:
        return f"{noun} is {values[0]}"
    return f"{noun} is one of {', '.join(values)}"


def describe_filters(spec: KillTaskSpec) -> str:
    """'sessions where ALL of: …', the rule DBbrain applies (every filter must hold)."""
    phrases = filter_phrases(spec)
    if not phrases:
        return "EVERY session on the instance (no filter)"
    if len(phrases) == 1:
        return f"sessions where {phrases[0]}"
    return "sessions where ALL of: " + ", ".join(phrases)
