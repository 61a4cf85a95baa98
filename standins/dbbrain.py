"""A local emulator of Tencent Cloud DBbrain API 3.0 (version 2021-05-27) for tests.

The bot's real Tencent SDK talks to it through
``HttpProfile(protocol="http", endpoint=emulator.netloc)``. It checks requests the way DBbrain
does (TC3-HMAC-SHA256 signature, version, timestamp, parameters), keeps kill tasks in memory,
and lets tests script faults and observe every call. Standard library only.

Run by hand: ``python -m standins.dbbrain --port 9100 --key AKID=secret``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_VERSION = "2021-05-27"
SERVICE = "dbbrain"
MAX_CLOCK_SKEW = 300  # seconds, as DBbrain
DEFAULT_KEYS = {"AKIDEMULATOR": "emulator-secret"}
PROCESS_FIELDS = ("ID", "User", "Host", "DB", "State", "Command", "Time", "Info", "SqlType")
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
    effect: str | None = None  # "created", "cancelled", "nothing-active" (cancel without task)


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
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if ok and kind is list and name != "StatDimensions":
            ok = all(isinstance(item, str) for item in value)
        if not ok:
            raise ApiError("InvalidParameterValue", f"`{name}` must be of type {kind.__name__}.")


def _product(params: dict[str, Any], allowed: set[str]) -> str:
    product = params.get("Product", "mysql")
    if product not in allowed:
        raise ApiError("InvalidParameterValue", f"Product `{product}` is not supported.")
    return product


class DbbrainEmulator:
    def __init__(
        self,
        keys: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        instances: Iterable[str] | None = None,
    ) -> None:
        self.keys = dict(DEFAULT_KEYS if keys is None else keys)
        # With an allow-list, other instance ids get ResourceNotFound; by default any is accepted.
        self.instances = None if instances is None else set(instances)
        self._host, self._port = host, port
        self._cond = threading.Condition()  # the one lock for all state below
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._delay = 0.0
        self._process_lists: dict[str, list[dict[str, str]]] = {}
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
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = self._thread = None

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
        """Forget calls, scripts and tasks (process lists, keys and delay stay)."""
        with self._cond:
            self.calls: list[Call] = []
            self._scripts: dict[str, deque[dict[str, Any]]] = {}
            self._tasks: list[dict[str, Any]] = []

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
        # DBbrain answers every field as a string, ID and Time included.
        clean = [
            {k: "" if row.get(k) is None else str(row[k]) for k in PROCESS_FIELDS} for row in rows
        ]
        with self._cond:
            self._process_lists[instance_id] = clean

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

    def active_task(self, instance_id: str, product: str = "mysql") -> dict[str, Any] | None:
        with self._cond:
            task = self._active(instance_id, product)
            return dict(task) if task else None

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Every task ever created, oldest first (copies)."""
        with self._cond:
            return [dict(t) for t in self._tasks]

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
            call.scripted = answer or None
            time.sleep(answer.get("delay", 0))
            # Scripted replies replace the server's work unless "apply" says otherwise.
            if answer.get("apply", not {"error", "http_status", "raw"} & answer.keys()):
                with self._cond:
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
        """Run one action; the caller holds the lock."""
        handler = {
            "CreateKillTask": self._create_kill_task,
            "CancelKillTask": self._cancel_kill_task,
            "DescribeMySqlProcessList": self._describe_process_list,
        }.get(call.action)
        if handler is None:
            raise ApiError("InvalidAction", f"The action `{call.action}` is not found.")
        return handler(call.params)

    def _check_instance(self, instance_id: str) -> None:
        if self.instances is not None and instance_id not in self.instances:
            raise ApiError("ResourceNotFound", f"Instance {instance_id} is not found.")

    def _active(self, instance_id: str, product: str) -> dict[str, Any] | None:
        now = time.time()
        for task in reversed(self._tasks):
            if (task["InstanceId"], task["Product"]) == (instance_id, product):
                ends = task["EndsAt"]
                live = task["CancelledAt"] is None and (ends is None or ends > now)
                return task if live else None
        return None

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
        self._check_instance(params["InstanceId"])
        if self._active(params["InstanceId"], product):
            raise ApiError("UnsupportedOperation.HasDuplicatedTask", "A kill task is running.")
        now = time.time()
        ends = None if duration == -1 else now + duration  # None: until cancelled
        task = {"InstanceId": params["InstanceId"], "Product": product, "Duration": duration}
        task |= {"Params": dict(params), "StartedAt": now, "EndsAt": ends, "CancelledAt": None}
        self._tasks.append(task)
        return {"Status": 1}, "created"

    def _cancel_kill_task(self, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
        _check_params(params, {"InstanceId": str, "Product": str}, ("InstanceId",))
        product = _product(params, {"mysql", "cynosdb"})
        self._check_instance(params["InstanceId"])
        task = self._active(params["InstanceId"], product)
        if task is None:
            return {"Status": 1}, "nothing-active"  # DBbrain answers success here too
        task["CancelledAt"] = time.time()
        return {"Status": 1}, "cancelled"

    def _describe_process_list(self, params: dict[str, Any]) -> tuple[dict[str, Any], None]:
        texts = ("InstanceId", "User", "Host", "DB", "State", "Command", "Info", "Product")
        ints = ("ID", "Time", "Limit")
        spec = dict.fromkeys(texts, str) | dict.fromkeys(ints, int) | {"StatDimensions": list}
        _check_params(params, spec, ("InstanceId",))
        _product(params, {"mysql", "mariadb", "cynosdb", "dcdb"})
        self._check_instance(params["InstanceId"])
        limit = params.get("Limit", 20)
        if limit <= 0:
            raise ApiError("InvalidParameterValue", "Limit must be greater than 0.")
        keys = ("ID", "User", "Host", "DB", "State", "Command")
        exact = {k: str(params[k]) for k in keys if k in params}
        rows = [
            dict(row)
            for row in self._process_lists.get(params["InstanceId"], [])
            if all(row[k] == v for k, v in exact.items())
            and params.get("Info", "") in row["Info"]
            and int(row["Time"] or 0) >= params.get("Time", 0)
        ]
        return {"ProcessList": rows[:limit]}, None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--key", action="append", default=[], help="SecretId=SecretKey")
    parser.add_argument("--instance", action="append", help="allowed instance id (repeatable)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    args = parser.parse_args(argv)
    keys = dict(k.split("=", 1) for k in args.key) if args.key else None
    emulator = DbbrainEmulator(keys, args.host, args.port, instances=args.instance).start()
    emulator.set_delay(args.delay)
    print(f"DBbrain emulator listening on {emulator.endpoint}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
