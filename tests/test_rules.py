"""Approval rules: parsing from the policy, and which rule applies to which request."""

from __future__ import annotations

import pytest

from bot.killtask import ONCE, UNTIL_STOPPED, KillTaskSpec
from bot.policy import PolicyError, parse_policy
from bot.rules import Requirement

ROLES = {"dba": {"members": ["S0DBA"], "allow": ["request", "approve"]}}


def policy(approval: dict, **top: object):  # type: ignore[no-untyped-def]
    return parse_policy({"roles": ROLES, "approval": approval, **top})


def spec(instance: str = "cdb-abc", duration: int = 600, **kw: object) -> KillTaskSpec:
    return KillTaskSpec(instance, duration, **{"user": "app", **kw})  # type: ignore[arg-type]


def test_todays_policy_needs_what_it_always_did() -> None:
    parsed = policy({"required": 2})
    assert parsed.requirement(spec()) == Requirement(2)
    assert parsed.approval.notify == () and parsed.approval.remind_after_minutes is None
    assert parsed.remind_running_minutes is None


def test_every_field_of_the_issue_parses() -> None:
    parsed = policy(
        {
            "required": 1, "notify": ["S0DBA", "U0ONE"], "remind_after_minutes": 0.05,
            "escalate_after_minutes": 10, "escalate_to": ["S0LEADS"],
            "rules": [
                {"when": {"instances": ["cdb-prod-*"]}, "required": 2},
                {"when": {"until_stopped": True}, "required": 2, "from": ["S0DBA"]},
            ],
        },
        running={"remind_every_minutes": 30},
    )  # fmt: skip
    assert parsed.approval.notify == ("S0DBA", "U0ONE")
    assert parsed.approval.remind_after_minutes == 0.05
    assert parsed.approval.escalate_to == ("S0LEADS",)
    assert parsed.remind_running_minutes == 30
    assert "S0DBA" in parsed.groups


@pytest.mark.parametrize(
    ("when", "matching", "other"),
    [
        ({"instances": ["cdb-prod-*"]}, spec("cdb-prod-1"), spec("cdb-test-1")),
        ({"products": ["cynosdb"]}, spec(product="cynosdb"), spec()),
        ({"kill_all": True}, spec(user=None), spec()),
        ({"min_duration": 1800}, spec(duration=3600), spec(duration=600)),
        ({"min_duration": 1800}, spec(duration=UNTIL_STOPPED), spec(duration=1799)),
        ({"once": True}, spec(duration=ONCE), spec(duration=600)),
        ({"until_stopped": True}, spec(duration=UNTIL_STOPPED), spec()),
    ],
)
def test_each_kind_of_rule_matches_only_its_requests(
    when: dict, matching: KillTaskSpec, other: KillTaskSpec
) -> None:
    parsed = policy({"required": 1, "rules": [{"when": when, "required": 3}]})
    assert parsed.requirement(matching).required == 3
    assert parsed.requirement(matching).because
    assert parsed.requirement(other) == Requirement(1)


def test_every_matching_rule_applies_and_the_strictest_wins() -> None:
    parsed = policy(
        {
            "rules": [
                {"when": {"instances": ["cdb-prod-*"]}, "required": 3},
                {"when": {"until_stopped": True}, "required": 2, "from": ["S0DBA"]},
                {"when": {"products": ["mysql"]}, "required": 1, "from": ["U0LEAD", "S0LEADS"]},
            ]
        }
    )
    needed = parsed.requirement(spec("cdb-prod-1", UNTIL_STOPPED))
    assert needed.required == 3
    assert needed.from_ == (frozenset({"S0DBA"}), frozenset({"U0LEAD", "S0LEADS"}))
    assert needed.counts("U0X", {"S0DBA", "S0LEADS"})
    assert needed.counts("U0LEAD", {"S0DBA"})
    assert not needed.counts("U0X", {"S0DBA"})
    assert not needed.counts("U0LEAD", set())


@pytest.mark.parametrize(
    ("approval", "field"),
    [
        ({"notify": ["dba-team"]}, "approval.notify[0]"),
        ({"notify": "S0DBA"}, "approval.notify"),
        ({"remind_after_minutes": 0}, "approval.remind_after_minutes"),
        ({"escalate_after_minutes": "soon"}, "approval.escalate_after_minutes"),
        ({"escalate_to": ["@leads"]}, "approval.escalate_to[0]"),
        ({"rules": {"when": {}}}, "approval.rules"),
        ({"rules": [{"when": {"instance": ["x"]}}]}, "approval.rules[0].when.instance"),
        ({"rules": [{"when": {}}]}, "approval.rules[0].when"),
        ({"rules": [{"when": {"kill_all": "yes"}}]}, "approval.rules[0].when.kill_all"),
        ({"rules": [{"when": {"min_duration": 0}}]}, "approval.rules[0].when.min_duration"),
        ({"rules": [{"when": {"products": ["pg"]}}]}, "approval.rules[0].when.products"),
        ({"rules": [{"when": {"once": True}, "required": 11}]}, "approval.rules[0].required"),
        ({"rules": [{"when": {"once": True}, "from": ["dba"]}]}, "approval.rules[0].from[0]"),
        ({"rules": [{"when": {"once": True}, "by": ["S0X"]}]}, "approval.rules[0].by"),
    ],
)
def test_a_wrong_field_is_named(approval: dict, field: str) -> None:
    with pytest.raises(PolicyError, match=field.replace("[", r"\[").replace("]", r"\]")):
        policy(approval)


def test_running_reminder_must_be_minutes() -> None:
    with pytest.raises(PolicyError, match=r"running\.remind_every_minutes"):
        policy({}, running={"remind_every_minutes": -1})
    with pytest.raises(PolicyError, match=r"running\.every"):
        policy({}, running={"every": 5})
