"""The policy's `approval` section, and who must approve a request: its rules, matched
against one spec.

Every matching rule applies, so the strictest wins: the highest `required`, and an approver
must belong to every `from` list of the matching rules. No I/O here; members are Slack IDs.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from bot.killtask import PRODUCTS, KillTaskSpec, broad_reason
from bot.policy_fields import MEMBER, PolicyError, id_list, is_number, minutes, no_unknown_keys

WHEN_KEYS = {"instances", "products", "kill_all", "min_duration", "once", "until_stopped"}
APPROVAL_KEYS = {
    "required", "allow_self_approval", "expires_after_minutes", "notify", "remind_after_minutes",
    "escalate_after_minutes", "escalate_to", "rules",
}  # fmt: skip


@dataclass(frozen=True)
class When:
    instances: tuple[str, ...] | None = None
    products: frozenset[str] | None = None
    kill_all: bool | None = None
    min_duration: int | None = None
    once: bool | None = None  # a one-shot kill (duration=once), as opposed to a kill task
    until_stopped: bool | None = None

    def matches(self, spec: KillTaskSpec) -> bool:
        if self.instances is not None and not any(
            fnmatch.fnmatchcase(spec.instance_id, p) for p in self.instances
        ):
            return False
        if self.products is not None and spec.product not in self.products:
            return False
        if self.kill_all is not None and (broad_reason(spec) is not None) != self.kill_all:
            return False
        if self.min_duration is not None and not (
            spec.until_stopped or spec.duration >= self.min_duration
        ):
            return False
        if self.once is not None and spec.once != self.once:
            return False
        return self.until_stopped is None or spec.until_stopped == self.until_stopped

    def describe(self) -> str:
        parts = []
        if self.instances is not None:
            parts.append("instances " + ", ".join(self.instances))
        if self.products is not None:
            parts.append("products " + ", ".join(sorted(self.products)))
        if self.kill_all is not None:
            parts.append("wide requests" if self.kill_all else "narrow requests")
        if self.min_duration is not None:
            parts.append(f"at least {self.min_duration} s")
        if self.once is not None:
            parts.append("a one-shot kill" if self.once else "a kill task")
        if self.until_stopped is not None:
            parts.append("until stopped" if self.until_stopped else "not until stopped")
        return " and ".join(parts) or "every request"


@dataclass(frozen=True)
class Rule:
    when: When
    required: int
    from_: frozenset[str] | None = None  # user (U…/W…) and group (S…) IDs


@dataclass(frozen=True)
class Requirement:
    """What a request needs: how many approvals, from whom, and which rules said so."""

    required: int
    from_: tuple[frozenset[str], ...] = ()  # an approver must be in each of these
    because: tuple[str, ...] = ()  # the matching rules, described

    def counts(self, user_id: str, user_groups: frozenset[str] | set[str]) -> bool:
        """Whether this person's approval counts toward the requirement."""
        return all(user_id in ids or ids & set(user_groups) for ids in self.from_)

    @property
    def groups(self) -> frozenset[str]:
        return frozenset(i for ids in self.from_ for i in ids if i.startswith("S"))


def requirement(base: int, rules: tuple[Rule, ...], spec: KillTaskSpec) -> Requirement:
    matching = [rule for rule in rules if rule.when.matches(spec)]
    return Requirement(
        required=max([base, *(rule.required for rule in matching)]),
        from_=tuple(rule.from_ for rule in matching if rule.from_),
        because=tuple(rule.when.describe() for rule in matching),
    )


def parse_when(data: object, where: str) -> When:
    if not isinstance(data, dict) or not data:
        raise PolicyError(f'{where}: must be a mapping such as {{instances: ["cdb-prod-*"]}}')
    for key in data:
        if key not in WHEN_KEYS:
            raise PolicyError(
                f"{where}.{key}: unknown condition; known are {', '.join(sorted(WHEN_KEYS))}"
            )
    found: dict[str, object] = {}
    if "instances" in data:
        value = data["instances"]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(p, str) and p for p in value)
        ):
            raise PolicyError(
                f"{where}.instances: must be a list of glob patterns such as cdb-prod-*"
            )
        found["instances"] = tuple(value)
    if "products" in data:
        value = data["products"]
        if not isinstance(value, list) or not value or any(p not in PRODUCTS for p in value):
            raise PolicyError(f"{where}.products: must list products from {', '.join(PRODUCTS)}")
        found["products"] = frozenset(value)
    for key in ("kill_all", "once", "until_stopped"):
        if key in data:
            if not isinstance(data[key], bool):
                raise PolicyError(f"{where}.{key}: must be true or false")
            found[key] = data[key]
    if "min_duration" in data:
        value = data["min_duration"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise PolicyError(f"{where}.min_duration: must be a whole number of seconds above 0")
        found["min_duration"] = value
    return When(**found)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Approval:
    required: int = 1
    allow_self_approval: bool = False
    expires_after_minutes: float = 30  # fractions allowed: 0.05 is 3 s
    notify: tuple[str, ...] = ()  # mentioned when a request is filed
    remind_after_minutes: float | None = None  # one reminder in the thread, mentioning notify
    escalate_after_minutes: float | None = None  # one escalation, mentioning escalate_to
    escalate_to: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()


def parse_approval(data: object) -> Approval:
    if not isinstance(data, dict):
        raise PolicyError("approval: must be a mapping")
    no_unknown_keys(data, APPROVAL_KEYS, "approval.")
    required = data.get("required", 1)
    if not isinstance(required, int) or isinstance(required, bool) or not 1 <= required <= 10:
        raise PolicyError("approval.required: must be a whole number from 1 to 10")
    self_ok = data.get("allow_self_approval", False)
    if not isinstance(self_ok, bool):
        raise PolicyError("approval.allow_self_approval: must be true or false")
    expires = data.get("expires_after_minutes", 30)
    if not is_number(expires) or not 0 < expires <= 1440:
        raise PolicyError(
            "approval.expires_after_minutes: must be a number of minutes above 0 and at most "
            "1440 (fractions allowed, e.g. 0.5)"
        )
    ids = {
        key: tuple(id_list(data[key], f"approval.{key}", None, MEMBER))
        for key in ("notify", "escalate_to")
        if data.get(key) is not None
    }
    return Approval(
        required, self_ok, expires, **ids,
        remind_after_minutes=minutes(data, "remind_after_minutes", "approval."),
        escalate_after_minutes=minutes(data, "escalate_after_minutes", "approval."),
        rules=parse_rules(data.get("rules") or []),
    )  # fmt: skip


def parse_rules(data: object) -> tuple[Rule, ...]:
    if not isinstance(data, list):
        raise PolicyError("approval.rules: must be a list of {when: …, required: N, from: […]}")
    rules = []
    for i, item in enumerate(data):
        where = f"approval.rules[{i}]"
        if not isinstance(item, dict):
            raise PolicyError(f"{where}: must be a mapping with when and required")
        no_unknown_keys(item, {"when", "required", "from"}, f"{where}.")
        when = parse_when(item.get("when"), f"{where}.when")
        required = item.get("required", 1)
        if not isinstance(required, int) or isinstance(required, bool) or not 1 <= required <= 10:
            raise PolicyError(f"{where}.required: must be a whole number from 1 to 10")
        from_ = None
        if item.get("from") is not None:
            from_ = frozenset(id_list(item["from"], f"{where}.from", None, MEMBER))
        rules.append(Rule(when, required, from_))
    return tuple(rules)
