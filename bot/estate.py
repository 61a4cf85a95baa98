"""Where each instance lives: its account (from the policy) and its region (pinned by the
policy, or learnt from DBbrain's instance list and cached in the store).

No Slack, Tencent or SQLAlchemy here: the list of instances comes through the `Lister` port
(bot.dbbrain) and the cache through the `InstanceCache` port (bot.store).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

CACHE_SECONDS = 300  # the list is read again when older than this
OPTIONS_LIMIT = 100  # Slack shows at most 100 options
CREDENTIAL_KINDS = ("env", "profile", "cvm_role", "tke_oidc", "assume_role")


@dataclass(frozen=True)
class Account:
    """One Tencent Cloud account the bot acts in, and how it gets its keys there."""

    name: str
    instances: tuple[str, ...] = ("*",)
    kind: str = "env"  # one of CREDENTIAL_KINDS
    role_arn: str | None = None
    session_name: str = "killtask"
    duration_seconds: int = 3600
    base: str | None = None  # assume_role: the account whose keys call STS (None: env)

    def covers(self, instance_id: str) -> bool:
        return any(fnmatch.fnmatchcase(instance_id, p) for p in self.instances)


DEFAULT_ACCOUNTS = (Account("default"),)


@dataclass(frozen=True)
class Location:
    """Where calls about one instance go: with which account's keys, to which region."""

    account: Account
    region: str


@dataclass(frozen=True)
class InstanceInfo:
    """One row of DBbrain's instance list, as cached."""

    instance_id: str
    name: str
    region: str
    product: str
    health_score: int | None = None
    event_count: int | None = None
    account: str = "default"
    fetched_at: float = 0.0


class UnknownInstance(Exception):
    """DBbrain does not list this instance in the account the policy gives it."""


class Lister(Protocol):
    def list_instances(
        self, account: Account, product: str, instance_ids: list[str] | None = None,
        quick: bool = False,
    ) -> list[InstanceInfo]: ...  # fmt: skip


class InstanceCache(Protocol):
    def cached_instances(self) -> list[InstanceInfo]: ...

    def cached_instance(self, instance_id: str) -> InstanceInfo | None: ...

    def cache_instances(self, rows: list[InstanceInfo], account: str | None) -> None: ...


@dataclass
class Estate:
    """Answers "where is this instance?" and "which instances may this person pick?"."""

    cache: InstanceCache
    lister: Lister | None = None
    accounts: Callable[[], tuple[Account, ...]] = lambda: DEFAULT_ACCOUNTS
    pins: Callable[[], tuple[tuple[str, str], ...]] = lambda: ()
    clock: Callable[[], float] = time.time
    products: tuple[str, ...] = ("mysql", "cynosdb")
    max_age: float = CACHE_SECONDS
    _last_full: dict[str, float] = field(default_factory=dict)
    _refreshing: threading.Lock = field(default_factory=threading.Lock)

    def _due(self, account: Account, now: float) -> bool:
        return now - self._last_full.get(account.name, 0.0) >= self.max_age

    def refresh_soon(self) -> None:
        """Refresh on a thread of its own (at most one), so a slow DBbrain delays nobody."""
        now = self.clock()
        if not any(self._due(a, now) for a in self.accounts()):
            return
        if self._refreshing.acquire(blocking=False):

            def run() -> None:
                try:
                    self.refresh()
                finally:
                    self._refreshing.release()

            threading.Thread(target=run, name="instance-list", daemon=True).start()

    def account_for(self, instance_id: str) -> Account | None:
        """The first account whose patterns match: first match wins, as in the policy."""
        return next((a for a in self.accounts() if a.covers(instance_id)), None)

    def pinned_region(self, instance_id: str) -> str | None:
        return next((r for p, r in self.pins() if fnmatch.fnmatchcase(instance_id, p)), None)

    def locate(self, instance_id: str, product: str = "mysql", quick: bool = False) -> Location:
        """The instance's account and region. Raises UnknownInstance when no account covers
        it or DBbrain does not list it; a failed lookup raises the lister's own error. A
        `quick` lookup (before Slack's ack) is one short try that never waits for a slot."""
        account = self.account_for(instance_id)
        if account is None:
            raise UnknownInstance(f"no account in the policy covers {instance_id}")
        region = self.pinned_region(instance_id)
        if region:
            return Location(account, region)
        cached = self.cache.cached_instance(instance_id)
        if cached is not None and cached.account == account.name:
            return Location(account, cached.region)
        if self.lister is None:
            raise UnknownInstance(f"{instance_id} is not in the instance list")
        found = self.lister.list_instances(account, product, [instance_id], quick=quick)
        found = [i for i in found if i.instance_id == instance_id]
        if not found:
            raise UnknownInstance(f"DBbrain does not list {instance_id} in account {account.name}")
        self.cache.cache_instances(found, None)
        return Location(account, found[0].region)

    def refresh(self, force: bool = False) -> None:
        """Read every account's list again when the cached one is older than max_age. A
        failure leaves the old list in place and is logged; pickers then show what is known."""
        if self.lister is None:
            return
        now = self.clock()
        # Another replica's read counts too, the list being shared through the store: when even
        # the account's oldest row is recent, its whole list was read recently.
        oldest: dict[str, float] = {}
        for info in self.cache.cached_instances():
            oldest[info.account] = min(oldest.get(info.account, info.fetched_at), info.fetched_at)
        for account in self.accounts():
            if not force and not self._due(account, now):
                continue
            self._last_full[account.name] = now
            if not force and now - oldest.get(account.name, 0.0) < self.max_age:
                continue
            rows: list[InstanceInfo] = []
            try:
                for product in self.products:
                    rows += self.lister.list_instances(account, product)
            except Exception as exc:  # the port's own error type; the old list stays
                log.warning("instance_list_failed account=%s error=%s", account.name, exc)
                continue
            self.cache.cache_instances(rows, account.name)

    def options(self, typed: str, allowed: Callable[[InstanceInfo], bool]) -> list[InstanceInfo]:
        """Cached instances matching the typed text (ID or name) that `allowed` lets the person
        pick, at most OPTIONS_LIMIT. Reads the cache only: answered well inside Slack's 3 s."""
        needle = typed.strip().lower()
        picked: list[InstanceInfo] = []
        for info in sorted(self.cache.cached_instances(), key=lambda i: i.instance_id):
            if (
                needle
                and needle not in info.instance_id.lower()
                and needle not in info.name.lower()
            ):
                continue
            if allowed(info):
                picked.append(info)
            if len(picked) >= OPTIONS_LIMIT:
                break
        return picked


def instance_ids_in(text: str, pattern: Iterable[str] = ("cdb-", "cynosdbmysql-")) -> list[str]:
    """Instance IDs named in free text, in order (cdb-… and cynosdbmysql-…)."""
    prefixes = "|".join(re.escape(p) for p in pattern)
    return re.findall(rf"(?<![\w-])((?:{prefixes})[A-Za-z0-9-]+)", text)


_ROLE_ARN_RE = re.compile(r"^qcs::cam::uin/\d+:role(?:Name)?/[\w+=,.@-]+$")
_REGION_RE = re.compile(r"^[a-z]{2,}(?:-[a-z0-9]+)+$")
_ACCOUNT_KEYS = {"name", "instances", "credentials"}
_ASSUME_KEYS = {"role_arn", "session_name", "duration_seconds", "base"}


def parse_accounts(data: object) -> tuple[Account, ...]:
    """The policy's `accounts:` list; ValueError names the field and what to write instead."""
    if not isinstance(data, list) or not data:
        raise ValueError("accounts: must be a list of {name, instances, credentials}")
    accounts: list[Account] = []
    for i, item in enumerate(data):
        where = f"accounts[{i}]"
        if not isinstance(item, dict) or set(item) - _ACCOUNT_KEYS:
            raise ValueError(f"{where}: must be a mapping with name, instances and credentials")
        name = item.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[\w.-]{1,40}", name):
            raise ValueError(f"{where}.name: must be a short name such as prod")
        if any(a.name == name for a in accounts):
            raise ValueError(f"{where}.name: {name} is used twice")
        patterns = item.get("instances", ["*"])
        if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError(f"{where}.instances: must be a list of glob patterns such as cdb-*")
        accounts.append(_credentials(name, tuple(patterns), item.get("credentials", "env"), where))
    names = {a.name for a in accounts}
    for account in accounts:
        if account.base is not None and (account.base not in names or account.base == account.name):
            raise ValueError(
                f"accounts: {account.name}'s base names no other account ({account.base})"
            )
    return tuple(accounts)


def _credentials(name: str, patterns: tuple[str, ...], data: object, where: str) -> Account:
    if isinstance(data, str):
        if data not in CREDENTIAL_KINDS or data == "assume_role":
            raise ValueError(
                f"{where}.credentials: must be env, profile, cvm_role, tke_oidc or "
                "{assume_role: {role_arn: ...}}"
            )
        return Account(name, patterns, data)
    role = data.get("assume_role") if isinstance(data, dict) and len(data) == 1 else None
    if not isinstance(role, dict) or set(role) - _ASSUME_KEYS:
        raise ValueError(
            f"{where}.credentials: assume_role takes role_arn, session_name, "
            "duration_seconds and base"
        )
    arn = role.get("role_arn")
    if not isinstance(arn, str) or not _ROLE_ARN_RE.match(arn):
        raise ValueError(
            f"{where}.credentials.assume_role.role_arn: must look like "
            "qcs::cam::uin/100000000001:roleName/killtask"
        )
    session = role.get("session_name", "killtask")
    if not isinstance(session, str) or not re.fullmatch(r"[\w+=,.@-]{2,128}", session):
        raise ValueError(f"{where}.credentials.assume_role.session_name: letters, digits, _-.@")
    duration = role.get("duration_seconds", 3600)
    if not isinstance(duration, int) or isinstance(duration, bool) or not 1 <= duration <= 43200:
        raise ValueError(f"{where}.credentials.assume_role.duration_seconds: 1 to 43200")
    base = role.get("base")
    if base is not None and not isinstance(base, str):
        raise ValueError(f"{where}.credentials.assume_role.base: must name another account")
    return Account(name, patterns, "assume_role", arn, session, duration, base)


def parse_regions(data: object) -> tuple[tuple[str, str], ...]:
    """The policy's `regions:` pins, instance pattern → region, first match wins."""
    if not isinstance(data, dict) or not data:
        raise ValueError(
            'regions: must map instance patterns to regions, e.g. {"cdb-fin-*": ap-shanghai-fsi}'
        )
    pins = []
    for pattern, region in data.items():
        if (
            not isinstance(pattern, str)
            or not isinstance(region, str)
            or not _REGION_RE.match(region)
        ):
            raise ValueError(f"regions.{pattern}: must be a region such as ap-guangzhou")
        pins.append((pattern, region))
    return tuple(pins)
