"""The policy file: loading errors that name the field, and who may do what, where, to which."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from bot.killtask import UNTIL_STOPPED
from bot.policy import VERBS, PolicyError, Target, load_policy, parse_policy

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
channels: [C0INCIDENT]
approval:
  required: 1
  allow_self_approval: false
  expires_after_minutes: 30
protected_users: [monitor]
roles:
  oncall:
    members: [U0ONCALL, S0ONCALL]
    allow: [request, approve]
    instances: ["cdb-*"]
    products: [mysql]
    max_duration: 3600
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, text))
    return str(caught.value)


def with_role(**settings: str) -> str:
    """GOOD with some of the oncall role's settings replaced (each value as YAML)."""
    lines = GOOD.splitlines()
    for key, value in settings.items():
        lines = [
            f"    {key}: {value}" if line.startswith(f"    {key}:") else line for line in lines
        ]
        if not any(line.startswith(f"    {key}:") for line in lines):
            lines.append(f"    {key}: {value}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- loading


def test_a_good_policy_loads(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD))
    assert policy.channels == frozenset({"C0INCIDENT"})
    assert policy.protected_users == frozenset({"monitor"})
    assert policy.groups == frozenset({"S0ONCALL"})
    (role,) = policy.roles
    assert role.name == "oncall"
    assert role.members == frozenset({"U0ONCALL", "S0ONCALL"})
    assert role.allow == frozenset({"request", "approve"})
    assert role.instances == ("cdb-*",)
    assert role.products == frozenset({"mysql"})
    assert role.max_duration == 3600


def test_the_example_policy_loads() -> None:
    policy = load_policy(ROOT / "policy.example.yaml")
    assert {r.name for r in policy.roles} == {"oncall", "dba", "incident-commander"}
    assert policy.channels is not None
    assert policy.protected_users == frozenset({"monitor", "dbbrain_agent"})
    assert policy.approval.required == 1
    assert policy.approval.allow_self_approval is False
    assert policy.groups == frozenset({"S02ONCALL", "S03DBA"})


def test_role_defaults() -> None:
    policy = parse_policy({"roles": {"dba": {"members": ["S0DBA"], "allow": ["approve"]}}})
    (role,) = policy.roles
    assert role.instances == ("*",)
    assert role.products == frozenset({"mysql", "cynosdb"})
    assert role.max_duration == 3600
    assert policy.channels is None
    assert policy.approval.required == 1
    assert policy.approval.allow_self_approval is False
    assert policy.approval.expires_after_minutes == 30


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"allow": "[request, aprove]"},
            "roles.oncall.allow[1]: 'aprove' is not a verb; use request, approve, reject, stop, "
            "preview, kill_all, break_glass",
        ),
        ({"allow": "[]"}, "roles.oncall.allow: must list verbs"),
        (
            {"members": "[U0ONCALL, alice]"},
            "roles.oncall.members[1]: 'alice' is not a Slack user (U…/W…) or user group (S…) ID; "
            "names can change, IDs cannot",
        ),
        ({"members": "[u0oncall]"}, "roles.oncall.members[0]: 'u0oncall' is not a Slack user"),
        ({"members": "[C0INCIDENT]"}, "roles.oncall.members[0]: 'C0INCIDENT' is not"),
        ({"members": "[]"}, "roles.oncall.members: must be a non-empty list"),
        ({"max_durration": "60"}, "roles.oncall.max_durration: unknown setting; known are allow,"),
        ({"max_duration": "0"}, "roles.oncall.max_duration: must be seconds (> 0) or -1"),
        ({"max_duration": "-2"}, "roles.oncall.max_duration: must be seconds (> 0) or -1"),
        ({"max_duration": "1h"}, "roles.oncall.max_duration: must be seconds (> 0) or -1"),
        ({"max_duration": "true"}, "roles.oncall.max_duration: must be seconds (> 0) or -1"),
        ({"max_duration": "60.5"}, "roles.oncall.max_duration: must be seconds (> 0) or -1"),
        ({"instances": "[]"}, "roles.oncall.instances: must be a list of glob patterns"),
        ({"instances": "cdb-*"}, "roles.oncall.instances: must be a list of glob patterns"),
        ({"products": "[postgres]"}, "roles.oncall.products: must list products from mysql"),
    ],
)
def test_role_errors_name_the_field(tmp_path: Path, settings: dict, message: str) -> None:
    assert load_error(tmp_path, with_role(**settings)).startswith(message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD + "chanels: [C0X]\n",
            "chanels: unknown setting; known are accounts, approval, channels",
        ),
        (GOOD.replace("[C0INCIDENT]", "[incident]"), "channels[0]: 'incident' is not a channel"),
        (GOOD.replace("required: 1", "required: 0"), "approval.required: must be a whole number"),
        (GOOD.replace("required: 1", "required: 11"), "approval.required: must be a whole number"),
        (
            GOOD.replace("allow_self_approval: false", "allow_self_approval: maybe"),
            "approval.allow_self_approval: must be true or false",
        ),
        (
            GOOD.replace("expires_after_minutes: 30", "expires_after_minutes: 0"),
            "approval.expires_after_minutes: must be a number of minutes above 0",
        ),
        (
            GOOD.replace("required: 1", "required: 1\n  quorum: 2"),
            "approval.quorum: unknown setting",
        ),
        (
            GOOD.replace("[monitor]", "monitor"),
            "protected_users: must be a list of MySQL account names",
        ),
        ("channels: [C0INCIDENT]\n", "roles: must map role names"),
        ("roles: {}\n", "roles: must map role names"),
        ("roles:\n  oncall: [U0ONCALL]\n", "roles.oncall: must be a mapping"),
        ("- roles\n", "the policy must be a mapping"),
        ("", "the policy must be a mapping"),
    ],
)
def test_policy_errors_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    assert load_error(tmp_path, text).startswith(message)


def test_bad_yaml_reports_the_line(tmp_path: Path) -> None:
    text = "roles:\n  oncall:\n    members: [U0ONCALL]\n   allow: [request]\n"
    assert load_error(tmp_path, text).endswith("is not valid YAML at line 4")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value) == f"cannot read the policy file {path}: No such file or directory"


def test_a_file_that_is_not_utf8_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"roles:\n  oncall:\n    members: [U0\xff]\n")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(path)


# ---------------------------------------------------------------- Policy.check

CHANNEL = "C0INCIDENT"
ELSEWHERE = "C0RANDOM"
ONCALL = "U0ONCALL"
DBA = "U0DBA"  # a dba only through the user group S0DBA
BOSS = "U0BOSS"
STRANGER = "U0STRANGER"
IN = "cdb-orders1"
OUT = "cynosdbmysql-ins-orders1"
CAP = 3600

POLICY = parse_policy(
    {
        "channels": [CHANNEL],
        "roles": {
            "oncall": {
                "members": [ONCALL],
                "allow": ["request"],
                "instances": ["cdb-*"],
                "products": ["mysql"],
                "max_duration": CAP,
            },
            "dba": {
                "members": ["S0DBA"],
                "allow": ["request", "approve", "reject", "stop"],
                "instances": ["cdb-*"],
                "max_duration": UNTIL_STOPPED,
            },
            "commander": {"members": [BOSS], "allow": list(VERBS), "max_duration": UNTIL_STOPPED},
        },
    }
)
DBA_GROUPS = frozenset({"S0DBA"})


def target(instance: str = IN, product: str = "mysql", duration: int | None = 600) -> Target:
    return Target(instance, product, duration)


def test_non_members_are_denied_by_default() -> None:
    decision = POLICY.check("request", STRANGER, frozenset(), CHANNEL, target())
    assert not decision.allowed
    assert decision.reason == "you are not a member of any role in the policy"
    assert not POLICY.is_member(STRANGER, frozenset())


def test_an_unknown_group_does_not_make_a_member() -> None:
    assert not POLICY.check("request", STRANGER, frozenset({"S0OTHER"}), CHANNEL).allowed


def test_only_the_listed_channels() -> None:
    decision = POLICY.check("request", BOSS, frozenset(), ELSEWHERE, target())
    assert not decision.allowed
    assert "`channels`" in decision.reason
    assert POLICY.check("request", BOSS, frozenset(), CHANNEL, target()).allowed


def test_no_channel_list_means_every_channel() -> None:
    policy = parse_policy({"roles": {"r": {"members": [ONCALL], "allow": ["request"]}}})
    assert policy.check("request", ONCALL, frozenset(), ELSEWHERE, target()).allowed


def test_verbs_per_role() -> None:
    decision = POLICY.check("approve", ONCALL, frozenset(), CHANNEL, target())
    assert not decision.allowed
    assert decision.reason == "none of your roles (oncall) allows `approve`"
    decision = POLICY.check("request", ONCALL, frozenset(), CHANNEL, target())
    assert decision.allowed
    assert decision.role == "oncall"
    assert decision.reason == "role oncall allows `request` here"


def test_group_membership_comes_from_the_caller() -> None:
    assert POLICY.groups == frozenset({"S0DBA"})
    assert POLICY.check("approve", DBA, DBA_GROUPS, CHANNEL, target()).allowed
    assert POLICY.check("approve", DBA, {"S0DBA", "S0OTHER"}, CHANNEL, target()).allowed
    assert not POLICY.check("approve", DBA, frozenset(), CHANNEL, target()).allowed


def test_a_check_without_a_target_asks_only_about_the_verb() -> None:
    decision = POLICY.check("stop", DBA, DBA_GROUPS, CHANNEL)
    assert decision.allowed
    assert decision.reason == "role dba allows `stop`"


def test_unknown_verbs_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown verb"):
        POLICY.check("delete", BOSS, frozenset(), CHANNEL)


@pytest.mark.parametrize(
    ("patterns", "instance", "covered"),
    [
        (["cdb-*"], "cdb-abc12345", True),
        (["cdb-*"], "cdbx-abc12345", False),
        (["cdb-*"], "CDB-abc12345", False),  # case matters
        (["cdb-*"], "cynosdbmysql-ins-abc", False),
        (["cdb-prod?"], "cdb-prod1", True),
        (["cdb-prod?"], "cdb-prod12", False),
        (["cdb-[ab]*"], "cdb-a1", True),
        (["cdb-[ab]*"], "cdb-c1", False),
        (["cdb-1", "cynosdbmysql-*"], "cynosdbmysql-ins-abc", True),
        (["*"], "anything-at-all", True),
    ],
)
def test_instance_patterns(patterns: list[str], instance: str, covered: bool) -> None:
    policy = parse_policy(
        {"roles": {"r": {"members": [ONCALL], "allow": ["request"], "instances": patterns}}}
    )
    decision = policy.check("request", ONCALL, frozenset(), CHANNEL, target(instance))
    assert decision.allowed is covered
    if not covered:
        assert decision.field == "instance_id"
        assert decision.reason == f"role r covers only instances matching {', '.join(patterns)}"


def test_products() -> None:
    decision = POLICY.check("request", ONCALL, frozenset(), CHANNEL, target(product="cynosdb"))
    assert not decision.allowed
    assert decision.field == "product"
    assert decision.reason == "role oncall covers only the products mysql"
    assert POLICY.check("request", DBA, DBA_GROUPS, CHANNEL, target(product="cynosdb")).allowed


@pytest.mark.parametrize(
    ("duration", "allowed"),
    [(1, True), (CAP - 1, True), (CAP, True), (CAP + 1, False), (UNTIL_STOPPED, False)],
)
def test_a_positive_duration_cap(duration: int, allowed: bool) -> None:
    decision = POLICY.check("request", ONCALL, frozenset(), CHANNEL, target(duration=duration))
    assert decision.allowed is allowed
    if not allowed:
        assert decision.field == "duration"
        assert decision.reason.startswith("role oncall allows at most 3600 s per task")
        assert decision.reason.endswith(", not until-stopped") is (duration == UNTIL_STOPPED)


@pytest.mark.parametrize("duration", [1, CAP, CAP + 1, 86_400, UNTIL_STOPPED, None])
def test_an_until_stopped_cap_allows_every_duration(duration: int | None) -> None:
    assert POLICY.check("request", DBA, DBA_GROUPS, CHANNEL, target(duration=duration)).allowed


def test_no_duration_means_no_cap() -> None:
    # reject and stop carry no duration; the cap is about starting tasks.
    policy = parse_policy(
        {"roles": {"r": {"members": [ONCALL], "allow": ["stop"], "max_duration": 60}}}
    )
    assert policy.check("stop", ONCALL, frozenset(), CHANNEL, target(duration=None)).allowed
    assert not policy.check("stop", ONCALL, frozenset(), CHANNEL, target(duration=61)).allowed


def test_any_role_that_fits_allows_and_the_first_refusal_is_reported() -> None:
    both = frozenset({"S0DBA"})  # ONCALL in the dba group too
    long = target(duration=CAP * 2)
    decision = POLICY.check("request", ONCALL, both, CHANNEL, long)
    assert decision.allowed
    assert decision.role == "dba"
    out = target(instance=OUT, duration=CAP * 2)
    decision = POLICY.check("request", ONCALL, both, CHANNEL, out)
    assert not decision.allowed
    assert decision.role == "oncall"
    assert decision.field == "instance_id"


# ---------------------------------------------------------------- the authorization matrix

# Who is asking, and the groups their Slack membership lookup returns.
PEOPLE = {
    "none": (STRANGER, frozenset({"S0OTHER"})),
    "oncall": (ONCALL, frozenset()),
    "dba": (DBA, DBA_GROUPS),
    "commander": (BOSS, frozenset()),
}
# Durations relative to oncall's cap of 3600 s.
DURATIONS = {"under": 600, "at": CAP, "over": CAP + 1, "until-stopped": UNTIL_STOPPED}
INSTANCES = {"in": IN, "out": OUT}

# The expected answers, written out rather than worked out: per person, the verbs they may use,
# the instances (by pattern) they may touch, and the durations they may ask for. Everything is
# refused outside the incident channel.
ALL_DURATIONS = {"under", "at", "over", "until-stopped"}
MAY = {
    "none": (set(), set(), set()),
    "oncall": ({"request"}, {"in"}, {"under", "at"}),
    "dba": ({"request", "approve", "reject", "stop"}, {"in"}, ALL_DURATIONS),
    "commander": (set(VERBS), {"in", "out"}, ALL_DURATIONS),
}


@pytest.mark.parametrize(
    ("verb", "who", "channel", "instance", "duration"),
    list(itertools.product(VERBS, PEOPLE, ["incident", "elsewhere"], INSTANCES, DURATIONS)),
)
def test_authorization_matrix(
    verb: str, who: str, channel: str, instance: str, duration: str
) -> None:
    user_id, groups = PEOPLE[who]
    channel_id = CHANNEL if channel == "incident" else ELSEWHERE
    decision = POLICY.check(
        verb,
        user_id,
        groups,
        channel_id,
        Target(INSTANCES[instance], "mysql", DURATIONS[duration]),
    )

    verbs, instances, durations = MAY[who]
    if channel != "incident":
        expected_rule = "`channels`"
    elif who == "none":
        expected_rule = "not a member"
    elif verb not in verbs:
        expected_rule = f"allows `{verb}`"
    elif instance not in instances:
        expected_rule = "covers only instances"
    elif duration not in durations:
        expected_rule = "at most"
    else:
        expected_rule = None

    if expected_rule is None:
        assert decision.allowed, decision.reason
        assert decision.reason == f"role {decision.role} allows `{verb}` here"
    else:
        assert not decision.allowed, f"{who} may not {verb} here"
        assert expected_rule in decision.reason


@pytest.mark.parametrize("minutes", [0.05, 0.5, 1, 1440])
def test_expiry_takes_fractions_of_a_minute(minutes: float) -> None:
    policy = parse_policy(
        {
            "approval": {"expires_after_minutes": minutes},
            "roles": {"r": {"members": ["U0A"], "allow": ["request"]}},
        }
    )
    assert policy.approval.expires_after_minutes == minutes


@pytest.mark.parametrize("minutes", [0, -1, 1441, float("nan"), float("inf"), True, "5"])
def test_expiry_refuses_what_is_not_a_duration(minutes: object) -> None:
    with pytest.raises(PolicyError, match="expires_after_minutes"):
        parse_policy(
            {
                "approval": {"expires_after_minutes": minutes},
                "roles": {"r": {"members": ["U0A"], "allow": ["request"]}},
            }
        )
