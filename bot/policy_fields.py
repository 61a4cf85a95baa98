"""Reading the policy file's fields: the error type, IDs, numbers and unknown keys, shared by
the policy (bot.policy) and its approval rules (bot.rules). No I/O here."""

from __future__ import annotations

import re

USER_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")
GROUP_RE = re.compile(r"^S[A-Z0-9]{2,}$")
CHANNEL_RE = re.compile(r"^[CGD][A-Z0-9]{2,}$")
MEMBER = "Slack user (U…/W…) or user group (S…) ID"


class PolicyError(ValueError):
    """The policy file is wrong; the message names the field and what to write instead."""


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def minutes(data: dict, key: str, prefix: str) -> float | None:
    """An optional number of minutes; fractions allowed (0.05 is 3 s)."""
    value = data.get(key)
    if value is None:
        return None
    if not is_number(value) or not 0 < value <= 10080:
        raise PolicyError(
            f"{prefix}{key}: must be a number of minutes above 0 and at most 10080 "
            "(fractions allowed, e.g. 0.5)"
        )
    return float(value)


def id_list(value: object, where: str, pattern: re.Pattern[str] | None, what: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise PolicyError(f"{where}: must be a non-empty list of {what}s")
    for i, item in enumerate(value):
        ok = isinstance(item, str) and (
            pattern.match(item) if pattern else (USER_RE.match(item) or GROUP_RE.match(item))
        )
        if not ok:
            raise PolicyError(
                f"{where}[{i}]: '{item}' is not a {what}; names can change, IDs cannot"
            )
    return list(value)


def no_unknown_keys(data: dict, known: set[str], prefix: str) -> None:
    for key in data:
        if key not in known:
            raise PolicyError(
                f"{prefix}{key}: unknown setting; known are {', '.join(sorted(known))}"
            )
