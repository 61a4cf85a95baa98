"""The gateway to DBbrain: with bot.credentials, the only module that imports Tencent's SDK.

It waits on the rate limit (bot.limits), runs the retry loop, and maps SDK errors to
`bot.cloud.CloudError`. The SDK's own StandardRetryer is never used: it re-sends a call that
already succeeded, which here would create a kill task twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

import requests
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.dbbrain.v20210527 import dbbrain_client, models
from urllib3.exceptions import NewConnectionError

from bot import metrics
from bot.cloud import (
    DEFAULT_ENDPOINT,
    CloudError,
    CloudResult,
    KillStage,
    SessionList,
    split_endpoint,
)
from bot.credentials import Credentials
from bot.estate import DEFAULT_ACCOUNTS, Account, InstanceInfo, Location, UnknownInstance
from bot.killtask import KillTaskSpec
from bot.limits import RATE_PER_SECOND, RATE_WINDOW, AllLimits, Limiter, RateLimiter
from bot.store.tables import StoreError

log = logging.getLogger(__name__)

# The limiter lives in bot.limits; these names stay importable from here.
__all__ = [
    "RATE_PER_SECOND", "RATE_WINDOW", "AllLimits", "DbbrainGateway", "Limiter", "RateLimiter",
    "endpoint_for", "split_endpoint",
]  # fmt: skip

LIST_REGION = "ap-guangzhou"  # where the SDK's docs say to ask DescribeDiagDBInstances
LIST_PAGE = 100
QUICK_TIMEOUT = 2  # seconds for a lookup made before Slack's ack
_THROTTLED = "RequestLimitExceeded"
BUDGET_IN_USE = "ReadBudgetInUse"  # the bot's own limiter, not DBbrain: nothing was sent
# The field every real answer of an action carries. An error reply the SDK did not recognise
# (DBBRAIN.md: a Content-Type with a charset) comes back as a response without it.
ANSWER_FIELD = {
    "CreateKillTask": "Status", "CancelKillTask": "Status", "KillMySqlThreads": "Threads",
    "DescribeMySqlProcessList": "ProcessList", "DescribeDiagDBInstances": "TotalCount",
    "DescribeDBDiagEvents": "TotalCount",
}  # fmt: skip


def answered(action: str, response: object) -> bool:
    """Whether DBbrain's reply is a real answer: Status 1 where there is a Status."""
    field = ANSWER_FIELD[action]
    value = getattr(response, field, None)
    return value == 1 if field == "Status" else value is not None


def endpoint_for(region: str, override: str | None) -> str:
    """DBBRAIN_ENDPOINT when set; a financial region's own host; else the global one."""
    if override:
        return override
    if region.endswith("-fsi"):
        return f"https://dbbrain.{region}.tencentcloudapi.com"
    return DEFAULT_ENDPOINT


def _sent_nothing(exc: TencentCloudSDKException) -> bool:
    """True only when the connection was never made, so DBbrain cannot have seen the call."""
    if exc.get_code() != "ClientNetworkError":
        return False
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(cause, requests.exceptions.ConnectionError) and cause.args:
        reason = getattr(cause.args[0], "reason", None)
        return isinstance(reason, NewConnectionError)
    return False


def _is_dbbrain_error(exc: TencentCloudSDKException) -> bool:
    """A reply DBbrain itself wrote (it carries a RequestId), so its meaning is certain."""
    return bool(exc.get_request_id())


class DbbrainGateway:
    """CreateKillTask and CancelKillTask with safe retries, a rate limit and plain errors."""

    def __init__(
        self,
        secret_id: str = "",
        secret_key: str = "",
        token: str | None = None,
        region: str | None = None,
        endpoint: str | None = DEFAULT_ENDPOINT,
        timeout: int = 10,
        max_attempts: int = 4,
        limiter: Limiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        *,
        credentials: Credentials | None = None,
        locate: Callable[[str, str], Location] | None = None,
    ):
        # `endpoint` overrides every region's endpoint; None picks each region's own.
        if endpoint:
            split_endpoint(endpoint)
        self._override = None if endpoint == DEFAULT_ENDPOINT else endpoint
        self._timeout = timeout
        self._credentials = credentials or Credentials(
            lambda: DEFAULT_ACCOUNTS, (secret_id, secret_key, token or None)
        )
        fixed = Location(DEFAULT_ACCOUNTS[0], region or LIST_REGION)
        self._locate = locate or (lambda instance_id, product: fixed)
        self._max_attempts = max_attempts
        self._limiter = limiter or RateLimiter()
        self._sleep = sleep
        self._local = threading.local()  # SDK clients (and HTTP sessions) per thread

    def _client(self, where: Location, quick: bool = False) -> dbbrain_client.DbbrainClient:
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        key = (where.account, where.region, quick)
        client = clients.get(key)
        if client is None:
            timeout = min(QUICK_TIMEOUT, self._timeout) if quick else self._timeout
            scheme, host = split_endpoint(endpoint_for(where.region, self._override))
            profile = ClientProfile(
                httpProfile=HttpProfile(protocol=scheme, endpoint=host, reqTimeout=timeout)
            )
            provider = self._credentials.provider(where.account)
            client = dbbrain_client.DbbrainClient(provider, where.region, profile)
            clients[key] = client
        return client

    def list_instances(
        self, account: Account, product: str, instance_ids: list[str] | None = None,
        quick: bool = False,
    ) -> list[InstanceInfo]:  # fmt: skip
        """DescribeDiagDBInstances in pages of 100: the instances DBbrain knows in `account`.
        A `quick` lookup runs before Slack's ack: one short try, no retries, no waiting for a
        read slot (the request is then filed with its region unknown, and looked up later)."""
        where = Location(account, LIST_REGION)
        found: list[InstanceInfo] = []
        while True:
            params: dict[str, object] = {
                "IsSupported": True, "Product": product, "Offset": len(found), "Limit": LIST_PAGE,
            }  # fmt: skip
            if instance_ids:
                params["InstanceIds"] = instance_ids
            _, response = self._call_raw("DescribeDiagDBInstances", params, True, where, quick)
            items = response.Items or []
            found += [_info(item, account.name, product) for item in items]
            if not items or len(found) >= (response.TotalCount or 0):
                return found

    def create_kill_task(self, spec: KillTaskSpec) -> CloudResult:
        return self._call("CreateKillTask", spec.cloud_params(), idempotent=False)

    def cancel_kill_task(self, instance_id: str, product: str) -> CloudResult:
        params = {"InstanceId": instance_id, "Product": product}
        return self._call("CancelKillTask", params, idempotent=True)

    def list_sessions(
        self, instance_id: str, product: str, filters: dict[str, object], limit: int,
        wait: bool = True,
    ) -> SessionList:  # fmt: skip
        params = {"InstanceId": instance_id, "Product": product, "Limit": limit, **filters}
        result, response = self._call_raw(
            "DescribeMySqlProcessList", params, idempotent=True, wait=wait
        )
        rows = [item._serialize() for item in (response.ProcessList or [])]
        return SessionList(rows=rows, request_id=result.request_id)

    def prepare_kill(self, instance_id: str, product: str, threads: list[int]) -> KillStage:
        """KillMySqlThreads, Stage Prepare: names the threads, kills nothing, so a retry is
        safe."""
        params = {"InstanceId": instance_id, "Product": product, "Stage": "Prepare"}
        params |= {"Threads": list(threads), "RecordHistory": True}
        result, response = self._call_raw("KillMySqlThreads", params, idempotent=True)
        return KillStage(
            tuple(int(t) for t in response.Threads or ()), result.request_id,
            sql_exec_id=response.SqlExecId, attempts=result.attempts,
        )  # fmt: skip

    def commit_kill(self, instance_id: str, product: str, sql_exec_id: str) -> KillStage:
        """KillMySqlThreads, Stage Commit: kills. Like CreateKillTask, never re-sent once it
        may have arrived."""
        params = {"InstanceId": instance_id, "Product": product, "Stage": "Commit"}
        params |= {"SqlExecId": sql_exec_id, "RecordHistory": True}
        result, response = self._call_raw("KillMySqlThreads", params, idempotent=False)
        threads = tuple(int(t) for t in response.Threads or ())
        return KillStage(threads, result.request_id, attempts=result.attempts)

    def diag_events(
        self, instance_id: str, product: str, start: str, end: str
    ) -> list[dict[str, object]]:
        """DescribeDBDiagEvents for one instance between two times (DBbrain's own format)."""
        params = {"InstanceIds": [instance_id], "Product": product, "StartTime": start}
        params |= {"EndTime": end, "Limit": 50}
        _, response = self._call_raw("DescribeDBDiagEvents", params, idempotent=True)
        return [item._serialize() for item in (response.Items or [])]

    def _call(self, action: str, params: dict[str, object], idempotent: bool) -> CloudResult:
        return self._call_raw(action, params, idempotent)[0]

    def _call_raw(
        self,
        action: str,
        params: dict[str, object],
        idempotent: bool,
        where: Location | None = None,
        quick: bool = False,
        wait: bool = True,
    ) -> tuple[CloudResult, object]:
        """One call, sent to the instance's own account and region."""
        if where is None:
            where = self._where(action, params)
        # Keys first (a refused AssumeRole is one error, outside the retry loop below).
        self._credentials.check(where.account)
        request = getattr(models, f"{action}Request")()
        request._deserialize(params)
        last: CloudError | None = None
        tries: list[tuple[str, str | None]] = []
        max_attempts = 1 if quick else self._max_attempts
        for attempt in range(1, max_attempts + 1):
            if attempt > 1:
                # Exponential backoff with full jitter, so replicas do not retry in step.
                self._sleep(random.uniform(0, min(2.0, 0.2 * 2 ** (attempt - 1))))
            try:
                # A lookup before the ack never waits for a read slot either: Slack waits 3 s.
                response = self._send(action, request, where, quick, wait and not quick)
            except TencentCloudSDKException as exc:
                last, retry = self._translate(action, exc, attempt, idempotent)
                retry = retry and attempt < max_attempts
                tries.append((last.code, last.request_id))
                last.tries = tuple(tries)
                log.warning(
                    "dbbrain_error action=%s code=%s request_id=%s attempt=%d retry=%s",
                    action, last.code, last.request_id, attempt, retry,
                )  # fmt: skip
                if not retry:
                    raise last from exc
                continue
            ok = answered(action, response)
            tries.append(("ok" if ok else "BadResponse", response.RequestId))
            if not ok:
                # e.g. an error reply the SDK did not recognise: the outcome is not certain.
                field = ANSWER_FIELD[action]
                raise CloudError(
                    "BadResponse",
                    f"DBbrain's answer had no valid {field} ({getattr(response, field, None)!r})",
                    request_id=response.RequestId,
                    outcome_unknown=not idempotent,
                    attempts=attempt,
                    action=action,
                    tries=tuple(tries),
                )
            # The instance list is read in the background every few minutes: not worth a line.
            level = logging.DEBUG if action == "DescribeDiagDBInstances" else logging.INFO
            log.log(
                level, "dbbrain_ok action=%s request_id=%s attempt=%d",
                action, response.RequestId, attempt,
            )  # fmt: skip
            return CloudResult(response.RequestId, attempts=attempt, tries=tuple(tries)), response
        assert last is not None
        raise last

    def _where(self, action: str, params: dict[str, object]) -> Location:
        # The lookup for a start or a stop is part of it: it must not wait behind reads.
        self._local.for_urgent = not action.startswith("Describe")
        try:
            named = params.get("InstanceId") or (params.get("InstanceIds") or [""])[0]
            return self._locate(str(named), str(params.get("Product") or "mysql"))
        except UnknownInstance as exc:
            raise CloudError("ResourceNotFound", str(exc), action=action) from exc
        except StoreError as exc:  # the cached instance list could not be read: nothing sent
            raise CloudError("StoreUnavailable", str(exc), action=action) from exc
        except CloudError as exc:
            if exc.action == "DescribeDiagDBInstances":
                exc.action = action  # the lookup failed, so `action` was never sent
            raise
        finally:
            self._local.for_urgent = False

    def _send(
        self, action: str, request: object, where: Location, quick: bool = False,
        wait: bool = True,
    ) -> object:  # fmt: skip
        """One try: wait for the rate limiter, then call; both are timed for /metrics. Without
        `wait`, a call that finds no free slot is not sent (CloudError ReadBudgetInUse)."""
        # DBbrain's reads are all Describe*; everything else stops or starts a task.
        urgent = not action.startswith("Describe") or getattr(self._local, "for_urgent", False)
        asked = time.perf_counter()
        try:
            free = self._limiter.acquire(urgent=urgent, wait=wait)
        except StoreError as exc:  # the shared limit lives in the database: nothing was sent
            raise CloudError("StoreUnavailable", str(exc), action=action) from exc
        if not free:
            raise CloudError(
                BUDGET_IN_USE, "other reads are using this second's share", action=action
            )
        began = time.perf_counter()
        metrics.rate_wait("urgent" if urgent else "read", began - asked)
        try:
            response = getattr(self._client(where, quick), action)(request)
        except TencentCloudSDKException as exc:
            metrics.dbbrain_call(action, exc.get_code() or "Unknown", time.perf_counter() - began)
            raise
        code = "ok" if answered(action, response) else "BadResponse"
        metrics.dbbrain_call(action, code, time.perf_counter() - began)
        return response

    @staticmethod
    def _translate(
        action: str, exc: TencentCloudSDKException, attempt: int, idempotent: bool
    ) -> tuple[CloudError, bool]:
        code = exc.get_code() or "Unknown"
        message = str(exc.get_message() or "")[:300]
        request_id = exc.get_request_id() or None
        if _is_dbbrain_error(exc):
            retry = code.startswith(_THROTTLED)
            error = CloudError(
                code, message, request_id=request_id, attempts=attempt, action=action
            )
            return error, retry
        if _sent_nothing(exc):
            error = CloudError(
                code, "could not connect to DBbrain", attempts=attempt, action=action
            )
            return error, True
        if code == "ServerNetworkError":
            message = "DBbrain's gateway answered with an HTTP error status"
        elif code == "ClientNetworkError":
            message = "the connection failed or timed out after the request was sent"
        else:
            message = "DBbrain's answer could not be read"
        # The call may have reached DBbrain: a cancel can safely be sent again, a create cannot.
        error = CloudError(
            code, message, attempts=attempt, outcome_unknown=not idempotent, action=action
        )
        return error, idempotent


def _info(item: object, account: str, product: str) -> InstanceInfo:
    get = item.__dict__.get  # the SDK model's fields are _Name attributes
    return InstanceInfo(
        instance_id=get("_InstanceId") or "",
        name=get("_InstanceName") or "",
        region=get("_Region") or "",
        product=get("_Product") or product,
        health_score=get("_HealthScore"),
        event_count=get("_EventCount"),
        account=account,
    )
