"""The gateway to DBbrain: the only module that imports Tencent's SDK.

It holds the client-side rate limit, the retry loop, and the mapping of SDK errors to
`bot.cloud.CloudError`. The SDK's own StandardRetryer is never used: it re-sends a call that
already succeeded, which here would create a kill task twice.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

import requests
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.dbbrain.v20210527 import dbbrain_client, models
from urllib3.exceptions import NewConnectionError

from bot import metrics
from bot.cloud import CloudError, CloudResult, KillStage, SessionList
from bot.killtask import KillTaskSpec

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://dbbrain.tencentcloudapi.com"
RATE_PER_SECOND = 20
# The window is a little longer than DBbrain's second: calls granted a second apart can still
# arrive closer together after network jitter (measured: 21-22 in a second without it).
RATE_WINDOW = 1.2
_THROTTLED = "RequestLimitExceeded"


class RateLimiter:
    """At most `rate` calls in any window (a sliding window, not a bucket, so a burst at a
    window's edge cannot double the rate DBbrain sees), of which reads may take at most
    `read_rate`: the rest of every window stays free for stops and starts, so a flood of
    previews, refreshes and samples never delays a CancelKillTask or a CreateKillTask."""

    def __init__(
        self,
        rate: int = RATE_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
        window: float = RATE_WINDOW,
        read_rate: int = 14,  # so 6 of every 20 slots are kept for stops and starts
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not 0 < read_rate <= rate:
            raise ValueError("read_rate must be from 1 to rate")
        self.rate = rate
        self.read_rate = read_rate
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()  # every call granted in the window
        self._reads: deque[float] = deque()  # the reads among them
        self._lock = threading.Lock()

    def acquire(self, urgent: bool = False) -> None:
        """Wait for a slot. An urgent call (a stop or a start) may take any free slot; a read
        waits, never fails, while reads already hold their share of the window."""
        while True:
            with self._lock:
                now = self._clock()
                for sent in (self._sent, self._reads):
                    while sent and now - sent[0] >= self.window:
                        sent.popleft()
                # The oldest grant that must leave the window before this call may go.
                blockers = []
                if len(self._sent) >= self.rate:
                    blockers.append(self._sent[0])
                if not urgent and len(self._reads) >= self.read_rate:
                    blockers.append(self._reads[0])
                if not blockers:
                    self._sent.append(now)
                    if not urgent:
                        self._reads.append(now)
                    return
                wait = max(blockers) + self.window - now
            self._sleep(max(wait, 0.001))


class Limiter(Protocol):
    def acquire(self, urgent: bool = False) -> None: ...


class AllLimits:
    """Wait for every limit in turn: this process's own first (cheap), then the shared one."""

    def __init__(self, *limiters: Limiter):
        self.limiters = limiters

    def acquire(self, urgent: bool = False) -> None:
        for limiter in self.limiters:
            limiter.acquire(urgent)


def split_endpoint(endpoint: str) -> tuple[str, str]:
    """'http://127.0.0.1:9100' -> ('http', '127.0.0.1:9100'); the SDK wants them apart, and a
    scheme left inside its endpoint would be signed as the Host header."""
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError("must look like https://dbbrain.tencentcloudapi.com or http://host:port")
    return parts.scheme, parts.netloc


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
        secret_id: str,
        secret_key: str,
        token: str | None = None,
        region: str | None = None,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: int = 10,
        max_attempts: int = 4,
        limiter: Limiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        scheme, host = split_endpoint(endpoint)
        self._cred = credential.Credential(secret_id, secret_key, token or None)
        self._profile = ClientProfile(
            httpProfile=HttpProfile(protocol=scheme, endpoint=host, reqTimeout=timeout)
        )
        self._region = region or ""
        self._max_attempts = max_attempts
        self._limiter = limiter or RateLimiter()
        self._sleep = sleep
        self._local = threading.local()  # one SDK client (and HTTP session) per thread

    def _client(self) -> dbbrain_client.DbbrainClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = dbbrain_client.DbbrainClient(self._cred, self._region, self._profile)
            self._local.client = client
        return client

    def create_kill_task(self, spec: KillTaskSpec) -> CloudResult:
        return self._call("CreateKillTask", spec.cloud_params(), idempotent=False)

    def cancel_kill_task(self, instance_id: str, product: str) -> CloudResult:
        params = {"InstanceId": instance_id, "Product": product}
        return self._call("CancelKillTask", params, idempotent=True)

    def list_sessions(
        self, instance_id: str, product: str, filters: dict[str, object], limit: int
    ) -> SessionList:
        params = {"InstanceId": instance_id, "Product": product, "Limit": limit, **filters}
        result, response = self._call_raw("DescribeMySqlProcessList", params, idempotent=True)
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
        self, action: str, params: dict[str, object], idempotent: bool
    ) -> tuple[CloudResult, object]:
        request = getattr(models, f"{action}Request")()
        request._deserialize(params)
        last: CloudError | None = None
        tries: list[tuple[str, str | None]] = []
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                # Exponential backoff with full jitter, so replicas do not retry in step.
                self._sleep(random.uniform(0, min(2.0, 0.2 * 2 ** (attempt - 1))))
            try:
                response = self._send(action, request)
            except TencentCloudSDKException as exc:
                last, retry = self._translate(action, exc, attempt, idempotent)
                retry = retry and attempt < self._max_attempts
                tries.append((last.code, last.request_id))
                last.tries = tuple(tries)
                log.warning(
                    "dbbrain_error action=%s code=%s request_id=%s attempt=%d retry=%s",
                    action, last.code, last.request_id, attempt, retry,
                )  # fmt: skip
                if not retry:
                    raise last from exc
                continue
            status = getattr(response, "Status", 1)  # reads have no Status field
            tries.append(("ok" if status == 1 else "BadResponse", response.RequestId))
            if status != 1:
                # e.g. an error reply the SDK did not recognise: the outcome is not certain.
                raise CloudError(
                    "BadResponse",
                    f"DBbrain answered without Status 1 (Status={status!r})",
                    request_id=response.RequestId,
                    outcome_unknown=not idempotent,
                    attempts=attempt,
                    action=action,
                    tries=tuple(tries),
                )
            log.info(
                "dbbrain_ok action=%s request_id=%s attempt=%d", action, response.RequestId, attempt
            )
            return CloudResult(response.RequestId, attempts=attempt, tries=tuple(tries)), response
        assert last is not None
        raise last

    def _send(self, action: str, request: object) -> object:
        """One try: wait for the rate limiter, then call; both are timed for /metrics."""
        # DBbrain's reads are all Describe*; everything else stops or starts a task.
        urgent = not action.startswith("Describe")
        asked = time.perf_counter()
        self._limiter.acquire(urgent=urgent)
        began = time.perf_counter()
        metrics.rate_wait("urgent" if urgent else "read", began - asked)
        try:
            response = getattr(self._client(), action)(request)
        except TencentCloudSDKException as exc:
            metrics.dbbrain_call(action, exc.get_code() or "Unknown", time.perf_counter() - began)
            raise
        code = "ok" if getattr(response, "Status", 1) == 1 else "BadResponse"
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
