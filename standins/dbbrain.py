"""A local emulator of Tencent Cloud DBbrain API 3.0 (version 2021-05-27) for tests.

The bot's real Tencent SDK talks to it through
``HttpProfile(protocol="http", endpoint=emulator.netloc)``. It checks requests the way DBbrain
does (TC3-HMAC-SHA256 signature, version, timestamp, parameters), keeps kill tasks in memory,
and lets tests script faults and observe every call.

Each instance's sessions come from a backend (standins.sessions): a real MySQL/MariaDB server
(``MySQLSessions``, needs PyMySQL) or rows in memory (``SimulatedSessions``, what
``set_process_list`` sets). A kill task really runs: a thread sweeps the process list about once
a second and kills every session matching all of its filters, the way DBbrain's does. The
matching rules are written here, independently of the bot's, because the emulator plays DBbrain.

Run by hand::

    python -m standins.dbbrain --port 9100 --key AKID=secret \
        --instance cdb-rehearsal=mysql://root@127.0.0.1:3306/ --instance cdb-dry
    python -m standins.dbbrain --config emulator.yaml

where the config file (JSON, or YAML with PyYAML) looks like
``{"keys": {"AKID": "secret"}, "kill_interval": 1.0, "instances": {"cdb-rehearsal":
"mysql://root@127.0.0.1:3306/", "cdb-dry": [{"ID": 7, "User": "app", ...}], "cdb-empty": null}}``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standins.sessions import (
    MySQLSessions,
    Sessions,
    SessionsError,
    SimulatedSessions,
)

API_VERSION = "2021-05-27"
SERVICE = "dbbrain"
MAX_CLOCK_SKEW = 300  # seconds, as DBbrain
DEFAULT_KEYS = {"AKIDEMULATOR": "emulator-secret"}
SQL_EXEC_TTL = 10.0  # seconds a KillMySqlThreads SqlExecId stays good, as DBbrain
# Sessions DBbrain never kills: server and replication threads (Command in any case).
SYSTEM_USERS = frozenset({"system user", "event_scheduler"})
SYSTEM_COMMANDS = frozenset({"daemon", "binlog dump", "binlog dump gtid"})
LIST_ITEMS: dict[str, type | None] = {"Threads": int, "StatDimensions": None}  # None: anything
SCRIPT_KEYS = {"error", "message", "http_status", "body", "raw", "delay", "drop", "apply"}
AUTH_RE = re.compile(
    r"TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/([^/]+)/tc3_request, "
    r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})"
)


@dataclass
class Call:
    """One request as received; recorded once its outcome is decided."""

    action: str
    params: dict[str, Any]
    headers: dict[str, str]
    secret_id: str | None = None
    signature_ok: bool = False
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    error_code: str | None = None
    received_at: float = field(default_factory=time.time)
    token: str | None = None
    scripted: dict[str, Any] | None = None  # the scripted answer this call consumed
    # "created", "cancelled", "nothing-active" (cancel without task); KillMySqlThreads:
    # "prepared", "killed", "expired" (a SqlExecId older than SQL_EXEC_TTL)
    effect: str | None = None


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code, self.message = code, message


def tc3_signature(secret_key: str, date: str, timestamp: str, canonical_request: str) -> str:
    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    scope = f"{date}/{SERVICE}/tc3_request"
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{digest}"
    key = mac(mac(mac(("TC3" + secret_key).encode(), date), SERVICE), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _check_params(params: dict[str, Any], spec: dict[str, type], required: Iterable[str]) -> None:
    for name in params:
        if name not in spec:
            raise ApiError("UnknownParameter", f"The parameter `{name}` is not recognized.")
    for name in required:
        if name not in params:
            raise ApiError("MissingParameter", f"The request is missing `{name}`.")
    for name, value in params.items():
        kind = spec[name]
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        item_kind = LIST_ITEMS.get(name, str)
        if ok and kind is list and item_kind is not None:
            ok = all(isinstance(x, item_kind) and not isinstance(x, bool) for x in value)
        if not ok:
            raise ApiError("InvalidParameterValue", f"`{name}` must be of type {kind.__name__}.")


def _product(params: dict[str, Any], allowed: set[str]) -> str:
    product = params.get("Product", "mysql")
    if product not in allowed:
        raise ApiError("InvalidParameterValue", f"Product `{product}` is not supported.")
    return product


def _bad(name: str, why: str) -> ApiError:
    return ApiError("InvalidParameterValue", f"`{name}` {why}.")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _client_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP part of a session's Host: ``ip:port`` for TCP clients, ``localhost`` for sockets."""
    if (whole := _ip(host)) is not None:
        return whole  # a bare (IPv6) address: its last group is not a port
    address, _, port = host.rpartition(":")
    return _ip(address) if port.isdigit() else None


def _seconds(text: str) -> int:
    try:
        return int(float(text or 0))
    except ValueError:
        return 0


@dataclass(frozen=True)
class KillFilter:
    """CreateKillTask's filters; a session must pass every one that was given (AND)."""

    user: str | None = None
    host: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    dbs: frozenset[str] | None = None
    commands: frozenset[str] | None = None  # lower case
    info: str | None = None
    infos: tuple[str, ...] = ()
    time: int | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> KillFilter:
        for name in ("User", "Host", "DB", "Command", "Info"):
            if name in params and not params[name].strip():
                raise _bad(name, "must not be empty")  # stricter than "no filter": catch bugs

        def names(name: str) -> frozenset[str] | None:
            if name not in params:
                return None
            items = [item.strip() for item in params[name].split(",")]
            if not all(items):
                raise _bad(name, "has an empty name in its comma-separated list")
            return frozenset(items)

        host = None
        if "Host" in params and (host := _ip(params["Host"])) is None:
            raise _bad("Host", "is not an IP address")
        if params.get("Time", 0) < 0:
            raise _bad("Time", "must not be negative")
        infos = tuple(params.get("Infos", ()))
        if not all(k.strip() for k in infos):
            raise _bad("Infos", "must not contain an empty keyword")
        commands = names("Command")
        return cls(
            user=params.get("User"),
            host=host,
            dbs=names("DB"),
            commands=None if commands is None else frozenset(c.lower() for c in commands),
            info=params.get("Info"),
            infos=infos,
            time=params.get("Time"),
        )

    def matches(self, row: Mapping[str, str]) -> bool:
        statement = row["Info"].lstrip()
        return (
            (self.user is None or row["User"] == self.user)
            and (self.host is None or _client_ip(row["Host"]) == self.host)
            and (self.dbs is None or row["DB"] in self.dbs)
            and (self.commands is None or row["Command"].lower() in self.commands)
            and (self.info is None or statement.startswith(self.info))
            # DBbrain does not say whether several Infos are AND or OR; AND kills less.
            and all(keyword in statement for keyword in self.infos)
            and (self.time is None or _seconds(row["Time"]) >= self.time)
        )


def is_system(row: Mapping[str, str]) -> bool:
    return row["User"] in SYSTEM_USERS or row["Command"].lower() in SYSTEM_COMMANDS


class DbbrainEmulator:
    def __init__(
        self,
        keys: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        instances: Iterable[str] | None = None,
        backends: Mapping[str, Sessions] | None = None,
        kill_interval: float = 1.0,
    ) -> None:
        self.keys = dict(DEFAULT_KEYS if keys is None else keys)
        # With an allow-list, other instance ids get ResourceNotFound; by default any is accepted.
        # Instances given a backend are configured, so they form (or join) the allow-list.
        configured = None if instances is None and backends is None else set(instances or ())
        self.instances = None if configured is None else configured | set(backends or ())
        # Instances without a backend have no sessions (an empty process list).
        self.backends: dict[str, Sessions] = dict(backends or {})
        self.kill_interval = kill_interval
        self.sql_exec_ttl = SQL_EXEC_TTL
        self._host, self._port = host, port
        # The one lock for all state below. Re-entrant (Condition's default), and never held
        # while a backend talks to its server.
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._delay = 0.0
        self._workers: list[tuple[threading.Thread, threading.Event]] = []
        self.reset()

    # --- life cycle -------------------------------------------------------------------------
    def start(self) -> DbbrainEmulator:
        if self._server is None:
            emulator = self

            class Handler(BaseHTTPRequestHandler):
                def do_POST(self) -> None:  # name fixed by http.server
                    emulator._serve(self)

                def log_message(self, format: str, *args: Any) -> None:
                    pass  # tests read `calls`, not stderr

            # Its handler threads are daemons, so a slow scripted answer cannot hold up stop().
            self._server = ThreadingHTTPServer((self._host, self._port), Handler)
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end every kill task's thread and close the backends' connections."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = self._thread = None
        self._stop_workers()
        with self._cond:
            backends = list(self.backends.values())
        for backend in backends:
            backend.close()

    def _stop_workers(self) -> None:
        with self._cond:
            workers, self._workers = self._workers, []
        for _, stop in workers:
            stop.set()
        for thread, _ in workers:
            thread.join(timeout=10)  # a sweep waits at most for one server round trip

    def __enter__(self) -> DbbrainEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def netloc(self) -> str:
        """What HttpProfile(endpoint=...) wants: host:port, no scheme."""
        return f"{self._host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.netloc}"

    # --- set-up and observation for tests ---------------------------------------------------
    def reset(self) -> None:
        """Forget calls, scripts and tasks, ending their threads (backends, keys, delay stay)."""
        self._stop_workers()
        with self._cond:
            self.calls: list[Call] = []
            self.arrived: list[Call] = []  # signed calls as they arrive, finished or not
            self._scripts: dict[str, deque[dict[str, Any]]] = {}
            self._tasks: list[dict[str, Any]] = []
            self._prepared: dict[str, dict[str, Any]] = {}  # KillMySqlThreads by SqlExecId

    def script(self, action: str, *answers: dict[str, Any]) -> None:
        for answer in answers:
            if not answer or set(answer) - SCRIPT_KEYS:
                raise ValueError(f"unknown scripted answer {answer!r}; keys: {sorted(SCRIPT_KEYS)}")
        with self._cond:
            self._scripts.setdefault(action, deque()).extend(dict(a) for a in answers)

    def set_delay(self, seconds: float) -> None:
        with self._cond:
            self._delay = seconds

    def set_process_list(self, instance_id: str, rows: Iterable[dict[str, Any]]) -> None:
        """Give the instance simulated sessions (replacing its backend); killed rows vanish."""
        self.set_backend(instance_id, SimulatedSessions(rows))

    def set_backend(self, instance_id: str, backend: Sessions) -> None:
        with self._cond:
            old = self.backends.get(instance_id)
            self.backends[instance_id] = backend
            if self.instances is not None:
                self.instances.add(instance_id)
        if old is not None and old is not backend:
            old.close()

    def calls_of(self, action: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.action == action and c.signature_ok]

    def wait_for_calls(self, action: str, n: int, timeout: float = 5.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(found := self.calls_of(action)) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(c.action, c.signature_ok, c.error_code) for c in self.calls]
                    raise AssertionError(
                        f"expected {n} signed {action} call(s) within {timeout}s, got "
                        f"{len(found)}; all calls (action, signature_ok, error): {seen}"
                    )
                self._cond.wait(left)
            return found

    def wait_for_arrival(self, action: str, instance_id: str, timeout: float = 5.0) -> Call:
        """The first signed call of `action` for that instance to arrive, even while a scripted
        delay still holds its answer back."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for call in self.arrived:
                    if call.action == action and call.params.get("InstanceId") == instance_id:
                        return call
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {action} for {instance_id} within {timeout}s")
                self._cond.wait(left)

    def active_task(self, instance_id: str, product: str = "mysql") -> dict[str, Any] | None:
        with self._cond:
            task = self._active(instance_id, product)
            return _copy(task) if task else None

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Every task ever created, oldest first (copies); ``Killed`` lists its thread ids."""
        with self._cond:
            return [_copy(t) for t in self._tasks]

    # --- request handling -------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        call = Call(h.headers.get("X-TC-Action", ""), {}, dict(h.headers.items()))
        call.token = h.headers.get("X-TC-Token")  # accepted as is, like a valid session token
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        answer: dict[str, Any] = {}
        fields: dict[str, Any] = {}
        try:
            time.sleep(self._delay)
            if h.path != "/":
                raise ApiError("InvalidRequest", f"Path {h.path} is not supported.")
            try:
                params = json.loads(body or b"{}")
            except ValueError:
                params = None
            call.params = params if isinstance(params, dict) else {}
            self._authenticate(h, body, call)
            if not isinstance(params, dict):
                raise ApiError("InvalidParameter", "The request body is not a JSON object.")
            with self._cond:
                queue = self._scripts.get(call.action)
                answer = queue.popleft() if queue else {}
                self.arrived.append(call)  # before any scripted delay: the call is in flight
                self._cond.notify_all()
            call.scripted = answer or None
            time.sleep(answer.get("delay", 0))
            # Scripted replies replace the server's work unless "apply" says otherwise.
            if answer.get("apply", not {"error", "http_status", "raw"} & answer.keys()):
                fields, call.effect = self._dispatch(call)
            if "error" in answer:
                raise ApiError(answer["error"], answer.get("message", "scripted error"))
        except ApiError as e:
            call.error_code = e.code
            fields = {"Error": {"Code": e.code, "Message": e.message}}
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        if answer.get("drop"):
            h.close_connection = True  # the server closes the socket without a reply
            return
        status, content_type = 200, "application/json"  # exactly: the SDK ignores errors else
        if "http_status" in answer:
            status, content_type = answer["http_status"], "text/plain"
            data = str(answer.get("body", "")).encode()
        elif "raw" in answer:
            data = str(answer["raw"]).encode()
        else:
            data = json.dumps({"Response": {**fields, "RequestId": call.request_id}}).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout); the call has been recorded anyway

    def _authenticate(self, h: BaseHTTPRequestHandler, body: bytes, call: Call) -> None:
        headers = h.headers
        if not call.action:
            raise ApiError("MissingParameter", "The request is missing X-TC-Action.")
        if headers.get("X-TC-Version") != API_VERSION:
            raise ApiError("NoSuchVersion", f"Version must be {API_VERSION}.")
        timestamp = headers.get("X-TC-Timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW:
            raise ApiError("AuthFailure.SignatureExpire", "The signature has expired.")
        match = AUTH_RE.fullmatch(headers.get("Authorization", ""))
        if not match:
            raise ApiError("AuthFailure.InvalidAuthorization", "Authorization is malformed.")
        secret_id, date, service, signed_headers, signature = match.groups()
        call.secret_id = secret_id
        secret_key = self.keys.get(secret_id)
        if secret_key is None:
            raise ApiError("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        # The SDK signs with the values it actually sent, so recompute from what we received.
        unsigned = headers.get("X-TC-Content-SHA256") == "UNSIGNED-PAYLOAD"
        payload_hash = hashlib.sha256(b"UNSIGNED-PAYLOAD" if unsigned else body).hexdigest()
        canonical = (
            f"{h.command}\n/\n\ncontent-type:{headers.get('Content-Type', '')}\n"
            f"host:{headers.get('Host', '')}\n\ncontent-type;host\n{payload_hash}"
        )
        utc_date = datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d")
        expected = tc3_signature(secret_key, date, timestamp, canonical)
        scope_ok = (service, signed_headers, date) == (SERVICE, "content-type;host", utc_date)
        if not scope_ok or not hmac.compare_digest(expected, signature):
            raise ApiError("AuthFailure.SignatureFailure", "The signature is not valid.")
        call.signature_ok = True

    def _dispatch(self, call: Call) -> tuple[dict[str, Any], str | None]:
        """Run one action; handlers take the lock themselves, never across backend I/O."""
        handler = {
            "CreateKillTask": self._create_kill_task,
            "CancelKillTask": self._cancel_kill_task,
            "DescribeMySqlProcessList": self._describe_process_list,
            "KillMySqlThreads": self._kill_threads,
        }.get(call.action)
        if handler is None:
            raise ApiError("InvalidAction", f"The action `{call.action}` is not found.")
        return handler(call.params)

    def _check_instance(self, instance_id: str) -> Sessions | None:
        """The instance's backend (None: no sessions); ResourceNotFound if not configured."""
        with self._cond:
            if self.instances is not None and instance_id not in self.instances:
                raise ApiError("ResourceNotFound", f"Instance {instance_id} is not found.")
            return self.backends.get(instance_id)

    @staticmethod
    def _live(task: dict[str, Any]) -> bool:
        ends = task["EndsAt"]
        return task["CancelledAt"] is None and (ends is None or ends > time.time())

    def _active(self, instance_id: str, product: str) -> dict[str, Any] | None:
        for task in reversed(self._tasks):
            if (task["InstanceId"], task["Product"]) == (instance_id, product):
                return task if self._live(task) else None
        return None

    @staticmethod
    def _list(backend: Sessions) -> list[dict[str, str]]:
        try:
            return backend.list()
        except SessionsError as e:
            raise ApiError("ResourceUnavailable", f"The instance cannot be reached: {e}") from e

    @staticmethod
    def _killable(backend: Sessions, row: Mapping[str, str]) -> bool:
        # Never the server's own threads, nor the connections and account we log in with.
        return not is_system(row) and not backend.is_own(row)

    def _create_kill_task(self, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
        texts = ("InstanceId", "Host", "DB", "Command", "Info", "User", "Product")
        spec = dict.fromkeys(texts, str) | {"Duration": int, "Time": int, "Infos": list}
        _check_params(params, spec, ("InstanceId", "Duration"))
        product = _product(params, {"mysql", "cynosdb"})
        duration = params["Duration"]
        if duration != -1 and duration <= 0:
            raise ApiError("InvalidParameterValue", "Duration must be -1 or greater than 0.")
        if "Info" in params and "Infos" in params:
            raise ApiError("InvalidParameter", "Info and Infos cannot be used together.")
        kill_filter = KillFilter.from_params(params)
        with self._cond:
            self._check_instance(params["InstanceId"])
            if self._active(params["InstanceId"], product):
                raise ApiError("UnsupportedOperation.HasDuplicatedTask", "A kill task is running.")
            now = time.time()
            ends = None if duration == -1 else now + duration  # None: until cancelled
            task = {"InstanceId": params["InstanceId"], "Product": product, "Duration": duration}
            task |= {"Params": dict(params), "StartedAt": now, "EndsAt": ends, "CancelledAt": None}
            task |= {"Killed": [], "LastError": None}
            self._tasks.append(task)
            self._workers = [(t, e) for t, e in self._workers if t.is_alive()]
            stop = threading.Event()
            worker = threading.Thread(
                target=self._run_task,
                args=(task, kill_filter, stop),
                name=f"kill-task-{params['InstanceId']}",
                daemon=True,
            )
            self._workers.append((worker, stop))
            worker.start()
        return {"Status": 1}, "created"

    def _run_task(
        self, task: dict[str, Any], kill_filter: KillFilter, stop: threading.Event
    ) -> None:
        """Sweep the instance's sessions every kill_interval until the task ends or stops."""
        while not stop.is_set():
            with self._cond:
                if not self._live(task):
                    return
                backend = self.backends.get(task["InstanceId"])  # looked up late: may change
                ends = task["EndsAt"]
            if backend is not None:
                self._sweep(task, kill_filter, backend)
            wait = self.kill_interval
            if ends is not None:
                wait = max(0.0, min(wait, ends - time.time()))
            stop.wait(wait)

    def _sweep(self, task: dict[str, Any], kill_filter: KillFilter, backend: Sessions) -> None:
        try:
            for row in backend.list():
                if not (self._killable(backend, row) and kill_filter.matches(row)):
                    continue
                thread_id = int(row["ID"])
                with self._cond:
                    # Checked before every kill, so a cancel stops the killing at once.
                    if not self._live(task):
                        return
                    if thread_id in task["Killed"]:
                        continue  # a killed session may linger a moment as "Killed"
                if backend.kill(thread_id):
                    with self._cond:
                        task["Killed"].append(thread_id)
                        self._cond.notify_all()
        except SessionsError as e:
            with self._cond:
                task["LastError"] = str(e)  # the next sweep tries again

    def _cancel_kill_task(self, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
        _check_params(params, {"InstanceId": str, "Product": str}, ("InstanceId",))
        product = _product(params, {"mysql", "cynosdb"})
        with self._cond:
            self._check_instance(params["InstanceId"])
            task = self._active(params["InstanceId"], product)
            if task is None:
                return {"Status": 1}, "nothing-active"  # DBbrain answers success here too
            task["CancelledAt"] = time.time()
            self._cond.notify_all()
        return {"Status": 1}, "cancelled"

    def _describe_process_list(self, params: dict[str, Any]) -> tuple[dict[str, Any], None]:
        texts = ("InstanceId", "User", "Host", "DB", "State", "Command", "Info", "Product")
        ints = ("ID", "Time", "Limit")
        spec = dict.fromkeys(texts, str) | dict.fromkeys(ints, int) | {"StatDimensions": list}
        _check_params(params, spec, ("InstanceId",))
        _product(params, {"mysql", "mariadb", "cynosdb", "dcdb"})
        backend = self._check_instance(params["InstanceId"])
        limit = params.get("Limit", 20)
        if limit <= 0:
            raise ApiError("InvalidParameterValue", "Limit must be greater than 0.")
        keys = ("ID", "User", "Host", "DB", "State", "Command")
        exact = {k: str(params[k]) for k in keys if k in params}
        rows = [
            row
            for row in (self._list(backend) if backend else [])
            if all(row[k] == v for k, v in exact.items())
            and params.get("Info", "") in row["Info"]
            and _seconds(row["Time"]) >= params.get("Time", 0)
        ]
        return {"ProcessList": rows[:limit]}, None

    def _kill_threads(self, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
        texts = ("InstanceId", "Stage", "SqlExecId", "Product")
        spec = dict.fromkeys(texts, str) | {"Threads": list, "RecordHistory": bool}
        _check_params(params, spec, ("InstanceId", "Stage"))
        product = _product(params, {"mysql", "cynosdb"})
        instance = params["InstanceId"]
        backend = self._check_instance(instance)
        if params["Stage"] == "Prepare":
            if "Threads" not in params:
                raise ApiError("MissingParameter", "The request is missing `Threads`.")
            threads = params["Threads"]
            if not threads or min(threads) <= 0:
                raise _bad("Threads", "must be a non-empty list of thread ids")
            exec_id = f"sql-exec-{uuid.uuid4().hex[:16]}"
            prepared = {"Target": (instance, product), "Threads": list(threads)}
            with self._cond:
                self._prepared[exec_id] = prepared | {"PreparedAt": time.time()}
            return {"Threads": list(threads), "SqlExecId": exec_id}, "prepared"
        if params["Stage"] != "Commit":
            raise _bad("Stage", "must be Prepare or Commit")
        if "SqlExecId" not in params:
            raise ApiError("MissingParameter", "The request is missing `SqlExecId`.")
        with self._cond:
            prepared = self._prepared.get(params["SqlExecId"])
            if prepared is None or prepared["Target"] != (instance, product):
                raise _bad("SqlExecId", "is unknown or was prepared for another instance")
            del self._prepared[params["SqlExecId"]]  # one commit per preparation
        if time.time() - prepared["PreparedAt"] > self.sql_exec_ttl:
            return {"Threads": []}, "expired"
        # As DBbrain with RecordHistory (its default): kill only sessions that still exist.
        rows = {row["ID"]: row for row in self._list(backend)} if backend else {}
        killed = []
        for thread_id in prepared["Threads"]:
            row = rows.get(str(thread_id))
            if backend is None or row is None or not self._killable(backend, row):
                continue
            try:
                if backend.kill(thread_id):
                    killed.append(thread_id)
            except SessionsError as e:
                raise ApiError("ResourceUnavailable", f"The instance cannot be reached: {e}") from e
        return {"Threads": killed}, "killed"


def _copy(task: dict[str, Any]) -> dict[str, Any]:
    return {**task, "Killed": list(task["Killed"]), "Params": dict(task["Params"])}


def backend_from(value: object) -> Sessions | None:
    """A config value as a backend: a MySQL URL, a list of simulated rows, or null (none)."""
    if value is None:
        return None
    if isinstance(value, str):
        return MySQLSessions(value)
    if isinstance(value, list) and all(isinstance(row, dict) for row in value):
        return SimulatedSessions(value)
    raise ValueError(f"an instance is a MySQL URL, a list of process rows or null, not {value!r}")


def load_config(path: str) -> dict[str, Any]:
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml  # only for YAML configs

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict) or set(data) - {"keys", "instances", "kill_interval"}:
        raise ValueError(f"{path}: want a mapping with keys, instances and kill_interval")
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--key", action="append", default=[], help="SecretId=SecretKey")
    parser.add_argument(
        "--instance",
        action="append",
        default=[],
        help="allowed instance id, or ID=mysql://user:password@host:port/ (repeatable)",
    )
    parser.add_argument("--config", help="JSON or YAML file with keys, instances, kill_interval")
    parser.add_argument("--kill-interval", type=float, help="seconds between kill task sweeps")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    args = parser.parse_args(argv)
    config = load_config(args.config) if args.config else {}
    keys = dict(config.get("keys") or {}) | dict(k.split("=", 1) for k in args.key)
    instances = dict(config.get("instances") or {})
    for item in args.instance:
        name, _, url = item.partition("=")
        instances[name] = url or None
    backends = {name: b for name, value in instances.items() if (b := backend_from(value))}
    emulator = DbbrainEmulator(
        keys or None,
        args.host,
        args.port,
        instances=instances or None,
        backends=backends,
        kill_interval=args.kill_interval or config.get("kill_interval", 1.0),
    ).start()
    emulator.set_delay(args.delay)
    print(f"DBbrain emulator listening on {emulator.endpoint}", flush=True)
    for name, backend in sorted(backends.items()):
        print(f"  {name}: {backend!r}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
