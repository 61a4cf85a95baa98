"""Accounts, region pins and the instance list: plain unit tests with hand-written fakes."""

from __future__ import annotations

import re

import pytest

from bot.cloud import CloudError
from bot.dbbrain import DEFAULT_ENDPOINT, endpoint_for
from bot.estate import (
    OPTIONS_LIMIT,
    Account,
    Estate,
    InstanceInfo,
    UnknownInstance,
    instance_ids_in,
    parse_accounts,
    parse_regions,
)
from bot.policy import PolicyError, parse_policy
from bot.slack.picking import instance_option

ARN = "qcs::cam::uin/100000000001:roleName/killtask"


class Cache:
    def __init__(self, rows: list[InstanceInfo] | None = None):
        self.rows = {r.instance_id: r for r in rows or []}

    def cached_instances(self) -> list[InstanceInfo]:
        return list(self.rows.values())

    def cached_instance(self, instance_id: str) -> InstanceInfo | None:
        return self.rows.get(instance_id)

    def cache_instances(self, rows: list[InstanceInfo], account: str | None) -> None:
        if account is not None:
            self.rows = {k: v for k, v in self.rows.items() if v.account != account}
        self.rows |= {r.instance_id: r for r in rows}


class Lister:
    def __init__(self, known: dict[str, str]):
        self.known = known  # instance → region
        self.asked: list[tuple[str, list[str] | None]] = []

    def list_instances(self, account, product, instance_ids=None, quick=False):  # type: ignore[no-untyped-def]
        self.asked.append((account.name, instance_ids))
        ids = instance_ids or list(self.known)
        return [
            InstanceInfo(i, f"name-{i}", self.known[i], product, 90, 0, account.name)
            for i in ids
            if i in self.known
        ]


def estate(lister: Lister | None = None, cache: Cache | None = None, **kw) -> Estate:  # type: ignore[no-untyped-def]
    accounts = (Account("prod", ("cdb-prod-*",), "assume_role", ARN), Account("default"))
    return Estate(cache or Cache(), lister, accounts=lambda: accounts, **kw)


def test_a_pinned_region_needs_no_lookup() -> None:
    lister = Lister({})
    found = estate(lister, pins=lambda: (("cdb-fin-*", "ap-shanghai-fsi"),)).locate("cdb-fin-1")
    assert (found.account.name, found.region) == ("default", "ap-shanghai-fsi")
    assert lister.asked == []


def test_a_miss_looks_up_that_instance_in_its_account_and_caches_it() -> None:
    lister, cache = Lister({"cdb-prod-1": "ap-beijing"}), Cache()
    where = estate(lister, cache).locate("cdb-prod-1")
    assert (where.account.name, where.region) == ("prod", "ap-beijing")
    assert lister.asked == [("prod", ["cdb-prod-1"])]
    estate(lister, cache).locate("cdb-prod-1")
    assert len(lister.asked) == 1  # the second answer came from the cache


def test_an_instance_nobody_lists_is_unknown() -> None:
    with pytest.raises(UnknownInstance, match="account default"):
        estate(Lister({})).locate("cdb-nowhere")


def test_a_refresh_keeps_the_old_list_when_dbbrain_fails() -> None:
    class Failing(Lister):
        def list_instances(self, account, product, instance_ids=None, quick=False):  # type: ignore[no-untyped-def]
            raise CloudError("InternalError", "down")

    old = InstanceInfo("cdb-a", "a", "ap-guangzhou", "mysql", account="default")
    cache = Cache([old])
    estate(Failing({}), cache).refresh(force=True)
    assert cache.cached_instances() == [old]


def test_options_filter_by_text_and_permission_and_stop_at_the_limit() -> None:
    rows = [
        InstanceInfo(f"cdb-{i:04d}", "billing" if i == 7 else "orders", "ap-guangzhou", "mysql")
        for i in range(300)
    ]
    place = estate(cache=Cache(rows))
    assert len(place.options("", lambda info: True)) == OPTIONS_LIMIT
    assert [i.instance_id for i in place.options("BILL", lambda info: True)] == ["cdb-0007"]
    assert place.options("cdb-00", lambda info: info.instance_id.endswith("5"))[0].instance_id == (
        "cdb-0005"
    )


def test_instance_ids_are_found_in_alert_text() -> None:
    text = "ALERT on cdb-abc123 and cynosdbmysql-ins-9x; not xcdb-zzz or cdb-"
    assert instance_ids_in(text) == ["cdb-abc123", "cynosdbmysql-ins-9x"]
    assert instance_ids_in("nothing here") == []


def test_financial_regions_have_their_own_endpoint_unless_overridden() -> None:
    assert (
        endpoint_for("ap-shanghai-fsi", None)
        == "https://dbbrain.ap-shanghai-fsi.tencentcloudapi.com"
    )
    assert endpoint_for("ap-guangzhou", None) == DEFAULT_ENDPOINT
    assert endpoint_for("ap-shenzhen-fsi", "http://127.0.0.1:9") == "http://127.0.0.1:9"


def test_an_option_shows_name_id_region_and_health_within_75_characters() -> None:
    info = InstanceInfo("cdb-abc", "x" * 200, "ap-shanghai-fsi", "mysql", health_score=81)
    option = instance_option(info)
    assert option["value"] == "cdb-abc"
    assert len(option["text"]["text"]) <= 75
    assert option["text"]["text"].endswith(" · cdb-abc · ap-shanghai-fsi · health 81")


def test_accounts_parse_with_every_credential_kind() -> None:
    accounts = parse_accounts(
        [
            {"name": "prod", "instances": ["cdb-prod-*"],
             "credentials": {"assume_role": {"role_arn": ARN, "base": "ops"}}},
            {"name": "ops", "credentials": "cvm_role"},
            {"name": "default", "credentials": "env"},
        ]
    )  # fmt: skip
    assert [(a.name, a.kind, a.base) for a in accounts] == [
        ("prod", "assume_role", "ops"), ("ops", "cvm_role", None), ("default", "env", None),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("accounts", "problem"),
    [
        ([], "accounts: must be a list"),
        ([{"name": "a", "credentials": "password"}], "accounts[0].credentials: must be env"),
        ([{"name": "a", "credentials": {"assume_role": {"role_arn": "arn"}}}], "role_arn"),
        ([{"name": "a", "credentials": {"assume_role": {"role_arn": ARN, "base": "b"}}}], "base"),
        ([{"name": "a"}, {"name": "a"}], "used twice"),
    ],
)
def test_account_mistakes_name_the_field(accounts: list, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_accounts(accounts)


def test_the_policy_carries_accounts_and_region_pins() -> None:
    roles = {"dba": {"members": ["U0A"], "allow": ["request"]}}
    policy = parse_policy({"roles": roles, "regions": {"cdb-fin-*": "ap-shanghai-fsi"}})
    assert policy.regions == (("cdb-fin-*", "ap-shanghai-fsi"),)
    assert [a.name for a in policy.accounts] == ["default"]
    with pytest.raises(PolicyError, match=r"regions\.cdb-x"):
        parse_policy({"roles": roles, "regions": {"cdb-x": "Shanghai"}})
    assert parse_regions({"*": "ap-guangzhou"}) == (("*", "ap-guangzhou"),)
