"""The policy file and the one question it answers: may this user do this, here, to that?

Default deny. Members are Slack user IDs (U…/W…) and user-group IDs (S…); display names are
never trusted because users can change them. Group membership is looked up by the caller and
passed in, so this module stays free of Slack.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bot.estate import DEFAULT_ACCOUNTS, Account, parse_accounts, parse_regions
from bot.killtask import PRODUCTS, UNTIL_STOPPED, KillTaskSpec
from bot.policy_fields import (
    CHANNEL_RE,
    MEMBER,
    PolicyError,
    id_list,
    is_number,
    minutes,
    no_unknown_keys,
)
from bot.rules import Approval, Requirement, parse_approval, requirement

__all__ = ["Approval", "Decision", "Policy", "PolicyError", "Role", "Target", "load_policy"]

VERBS = ("request", "approve", "reject", "stop", "preview", "kill_all", "break_glass")
DEFAULT_MAX_DURATION = 3600

_ROLE_KEYS = {"members", "allow", "instances", "products", "max_duration"}
_TOP_KEYS = {
    "channels", "approval", "roles", "protected_users", "preview", "running", "accounts",
    "regions", "once", "effect",
}  # fmt: skip
DEFAULT_ONCE_MAX_SESSIONS = 500
DEFAULT_SAMPLE_SECONDS = 30.0


@dataclass(frozen=True)
class Role:
    name: str
    members: frozenset[str]
    allow: frozenset[str]
    instances: tuple[str, ...] = ("*",)
    products: frozenset[str] = frozenset(PRODUCTS)
    max_duration: int = DEFAULT_MAX_DURATION

    def covers_instance(self, instance_id: str) -> bool:
        return any(fnmatch.fnmatchcase(instance_id, pattern) for pattern in self.instances)

    def covers_duration(self, duration: int) -> bool:
        if self.max_duration == UNTIL_STOPPED:
            return True
        return duration != UNTIL_STOPPED and duration <= self.max_duration


@dataclass(frozen=True)
class Target:
    """What an action is about: the request's instance, product and duration."""

    instance_id: str
    product: str
    duration: int | None = None  # None: the duration cap does not apply (reject, stop)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # which rule said yes or no, in words a person understands
    role: str | None = None
    field: str | None = None  # the request field the refusal is about, for modal errors


@dataclass(frozen=True)
class Policy:
    roles: tuple[Role, ...]
    approval: Approval = field(default_factory=Approval)
    channels: frozenset[str] | None = None
    protected_users: frozenset[str] = frozenset()
    show_statements: bool = True  # statements can hold customer data; a policy may hide them
    remind_running_minutes: float | None = None  # "still killing on …", every this often
    accounts: tuple[Account, ...] = DEFAULT_ACCOUNTS  # first match wins
    regions: tuple[tuple[str, str], ...] = ()  # instance pattern → pinned region
    # A one-shot kill of more sessions than this needs `kill_all` from whoever files or approves.
    once_max_sessions: int = DEFAULT_ONCE_MAX_SESSIONS
    sample_seconds: float = DEFAULT_SAMPLE_SECONDS  # how often a running task's effect is read
    groups: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        groups = {m for role in self.roles for m in role.members if m.startswith("S")}
        for rule in self.approval.rules:
            groups |= {m for m in rule.from_ or () if m.startswith("S")}
        object.__setattr__(self, "groups", frozenset(groups))

    def requirement(self, spec: KillTaskSpec) -> Requirement:
        """How many approvals this request needs, and from whom (the strictest rule wins)."""
        return requirement(self.approval.required, self.approval.rules, spec)

    def roles_of(self, user_id: str, user_groups: frozenset[str] | set[str]) -> list[Role]:
        return [r for r in self.roles if user_id in r.members or r.members & set(user_groups)]

    def is_member(self, user_id: str, user_groups: frozenset[str] | set[str]) -> bool:
        return bool(self.roles_of(user_id, user_groups))

    def check(
        self,
        verb: str,
        user_id: str,
        user_groups: frozenset[str] | set[str],
        channel_id: str,
        target: Target | None = None,
    ) -> Decision:
        """Answer for one verb; on refusal, name the rule that said no."""
        if verb not in VERBS:
            raise ValueError(f"unknown verb {verb}")
        if self.channels is not None and channel_id not in self.channels:
            return Decision(
                False,
                "this channel is not in the policy's `channels` list; use /killtask in an "
                "incident channel the policy names",
            )
        roles = self.roles_of(user_id, user_groups)
        if not roles:
            return Decision(False, "you are not a member of any role in the policy")
        with_verb = [r for r in roles if verb in r.allow]
        if not with_verb:
            names = ", ".join(r.name for r in roles)
            return Decision(False, f"none of your roles ({names}) allows `{verb}`")
        if target is None:
            return Decision(True, f"role {with_verb[0].name} allows `{verb}`", with_verb[0].name)
        refusal: Decision | None = None
        for role in with_verb:
            problem = self._mismatch(role, target)
            if problem is None:
                return Decision(True, f"role {role.name} allows `{verb}` here", role.name)
            refusal = refusal or Decision(False, problem[1], role.name, problem[0])
        assert refusal is not None
        return refusal

    @staticmethod
    def _mismatch(role: Role, target: Target) -> tuple[str, str] | None:
        if not role.covers_instance(target.instance_id):
            patterns = ", ".join(role.instances)
            return "instance_id", f"role {role.name} covers only instances matching {patterns}"
        if target.product not in role.products:
            products = ", ".join(sorted(role.products))
            return "product", f"role {role.name} covers only the products {products}"
        if target.duration is not None and not role.covers_duration(target.duration):
            if role.max_duration == UNTIL_STOPPED:  # pragma: no cover - covers everything
                return None
            return (
                "duration",
                f"role {role.name} allows at most {role.max_duration} s per task"
                + (", not until-stopped" if target.duration == UNTIL_STOPPED else ""),
            )
        return None


# ---------------------------------------------------------------- loading


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path} is not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PolicyError(f"{path} is not valid YAML{where}") from None
    return parse_policy(data)


def parse_policy(data: object) -> Policy:
    if not isinstance(data, dict):
        raise PolicyError("the policy must be a mapping with `roles` (and optionally `channels`)")
    no_unknown_keys(data, _TOP_KEYS, "")
    channels = None
    if data.get("channels") is not None:
        channels = frozenset(id_list(data["channels"], "channels", CHANNEL_RE, "channel ID (C…)"))
    approval = parse_approval(data.get("approval") or {})
    roles_data = data.get("roles")
    if not isinstance(roles_data, dict) or not roles_data:
        raise PolicyError("roles: must map role names to their members and allowed verbs")
    roles = tuple(_parse_role(str(name), spec) for name, spec in roles_data.items())
    protected = data.get("protected_users") or []
    if not isinstance(protected, list) or not all(isinstance(u, str) and u for u in protected):
        raise PolicyError("protected_users: must be a list of MySQL account names")
    preview = data.get("preview") or {}
    if not isinstance(preview, dict):
        raise PolicyError("preview: must be a mapping such as {show_statements: false}")
    no_unknown_keys(preview, {"show_statements"}, "preview.")
    show = preview.get("show_statements", True)
    if not isinstance(show, bool):
        raise PolicyError("preview.show_statements: must be true or false")
    running = data.get("running") or {}
    if not isinstance(running, dict):
        raise PolicyError("running: must be a mapping such as {remind_every_minutes: 30}")
    no_unknown_keys(running, {"remind_every_minutes"}, "running.")
    every = minutes(running, "remind_every_minutes", "running.")
    try:
        accounts = parse_accounts(data["accounts"]) if "accounts" in data else DEFAULT_ACCOUNTS
        regions = parse_regions(data["regions"]) if "regions" in data else ()
    except ValueError as exc:
        raise PolicyError(str(exc)) from None
    once_max, sample_seconds = _parse_effect(data)
    return Policy(
        roles, approval, channels, frozenset(protected), show, every, accounts, regions,
        once_max_sessions=once_max, sample_seconds=sample_seconds,
    )  # fmt: skip


def _parse_effect(data: dict) -> tuple[int, float]:
    """`once.max_sessions` and `effect.sample_seconds` (fractions allowed, for tests)."""
    once = data.get("once") or {}
    effect = data.get("effect") or {}
    if not isinstance(once, dict) or not isinstance(effect, dict):
        raise PolicyError("once and effect: must be mappings such as {max_sessions: 500}")
    no_unknown_keys(once, {"max_sessions"}, "once.")
    no_unknown_keys(effect, {"sample_seconds"}, "effect.")
    max_sessions = once.get("max_sessions", DEFAULT_ONCE_MAX_SESSIONS)
    if (
        not isinstance(max_sessions, int)
        or isinstance(max_sessions, bool)
        or not 1 <= max_sessions <= 100_000
    ):
        raise PolicyError("once.max_sessions: must be a whole number from 1 to 100000")
    seconds = effect.get("sample_seconds", DEFAULT_SAMPLE_SECONDS)
    if not is_number(seconds) or not 0 < seconds <= 3600:
        raise PolicyError(
            "effect.sample_seconds: must be seconds above 0 and at most 3600 (fractions allowed)"
        )
    return max_sessions, float(seconds)


def _parse_role(name: str, data: object) -> Role:
    where = f"roles.{name}"
    if not isinstance(data, dict):
        raise PolicyError(f"{where}: must be a mapping with members and allow")
    no_unknown_keys(data, _ROLE_KEYS, f"{where}.")
    members = id_list(data.get("members"), f"{where}.members", None, MEMBER)
    allow = data.get("allow")
    if not isinstance(allow, list) or not allow:
        raise PolicyError(f"{where}.allow: must list verbs from {', '.join(VERBS)}")
    for i, verb in enumerate(allow):
        if verb not in VERBS:
            raise PolicyError(f"{where}.allow[{i}]: '{verb}' is not a verb; use {', '.join(VERBS)}")
    instances = data.get("instances", ["*"])
    if (
        not isinstance(instances, list)
        or not instances
        or not all(isinstance(p, str) and p for p in instances)
    ):
        raise PolicyError(f"{where}.instances: must be a list of glob patterns such as cdb-*")
    products = data.get("products", list(PRODUCTS))
    if not isinstance(products, list) or not products or any(p not in PRODUCTS for p in products):
        raise PolicyError(f"{where}.products: must list products from {', '.join(PRODUCTS)}")
    max_duration = data.get("max_duration", DEFAULT_MAX_DURATION)
    if (
        not isinstance(max_duration, int)
        or isinstance(max_duration, bool)
        or (max_duration < 1 and max_duration != UNTIL_STOPPED)
    ):
        raise PolicyError(f"{where}.max_duration: must be seconds (> 0) or -1 for until-stopped")
    return Role(
        name=name,
        members=frozenset(members),
        allow=frozenset(allow),
        instances=tuple(instances),
        products=frozenset(products),
        max_duration=max_duration,
    )


def policy_hash(path: str) -> str:
    """A short fingerprint of the policy file, so each replica's log says which it runs."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return "unreadable"
