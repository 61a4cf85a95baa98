"""A Tencent Cloud API 3.0 endpoint on loopback: checks requests, runs actions, records calls.

What every Tencent Cloud service shares lives here, so that a stand-in for another service is a
subclass naming its service, version and ACTIONS table: the HTTP server, the TC3 signature
check, faults scripted by tests (errors, HTTP statuses, raw bodies, delays, dropped
connections), and the record of every call that tests observe and wait for.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

from standins.dbbrain import signing
from standins.dbbrain.calls import ApiError, Call

SCRIPT_KEYS = {"error", "message", "http_status", "body", "raw", "delay", "drop", "apply"}

Answer = tuple[dict[str, Any], str | None]  # response fields, effect (see Call.effect)
# One action: (the stand-in whose actions table holds it, the request's params) → its answer.
Handler = Callable[[Any, dict[str, Any]], Answer]


class CloudApiServer:
    """One service's API on loopback; subclasses set service, version and actions."""

    service: ClassVar[str]
    version: ClassVar[str]
    actions: ClassVar[Mapping[str, Handler]]

    def __init__(self, keys: Mapping[str, str], host: str = "127.0.0.1", port: int = 0) -> None:
        self.keys = dict(keys)
        # Temporary keys granted by an STS stand-in: their token and expiry, and every key's
        # account (keys not named here belong to account "default").
        self.tokens: dict[str, tuple[str, float]] = {}
        self.key_accounts: dict[str, str] = {}
        self._host, self._port = host, port
        # The one lock for all state, the subclass's too. Re-entrant (Condition's default), and
        # never held while a backend talks to its server.
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._delay = 0.0
        self.calls: list[Call] = []
        self.arrived: list[Call] = []  # signed calls as they arrive, finished or not
        self._scripts: dict[str, deque[dict[str, Any]]] = {}

    # --- life cycle -------------------------------------------------------------------------
    def start(self) -> Self:
        if self._server is None:
            stand_in = self

            class Handler(BaseHTTPRequestHandler):
                def do_POST(self) -> None:  # name fixed by http.server
                    stand_in._serve(self)

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

    def __enter__(self) -> Self:
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

    def grant(
        self, secret_id: str, secret_key: str, token: str, expires: float, account: str
    ) -> None:
        """Accept a temporary key (with its token) until `expires`, acting in `account`."""
        with self._cond:
            self.keys[secret_id] = secret_key
            self.tokens[secret_id] = (token, expires)
            self.key_accounts[secret_id] = account

    def account_of_key(self, secret_id: str | None) -> str:
        with self._cond:
            return self.key_accounts.get(secret_id or "", "default")

    # --- scripting and observation for tests ------------------------------------------------
    def reset(self) -> None:
        """Forget calls and scripts (keys and delay stay)."""
        with self._cond:
            self.calls = []
            self.arrived = []
            self._scripts = {}

    def script(self, action: str, *answers: dict[str, Any]) -> None:
        for answer in answers:
            if not answer or set(answer) - SCRIPT_KEYS:
                raise ValueError(f"unknown scripted answer {answer!r}; keys: {sorted(SCRIPT_KEYS)}")
        with self._cond:
            self._scripts.setdefault(action, deque()).extend(dict(a) for a in answers)

    def set_delay(self, seconds: float) -> None:
        with self._cond:
            self._delay = seconds

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

    # --- request handling -------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        """Check the request, take its scripted answer, run the action, record it, reply."""
        call = Call(h.headers.get("X-TC-Action", ""), {}, dict(h.headers.items()))
        call.token = h.headers.get("X-TC-Token")  # accepted as is, like a valid session token
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        answer: dict[str, Any] = {}
        try:
            time.sleep(self._delay)
            self._accept(h, body, call)
            answer = self._take_script(call)
            fields = self._run(call, answer)
        except ApiError as e:
            call.error_code = e.code
            fields = {"Error": {"Code": e.code, "Message": e.message}}
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        self._reply(h, call, answer, fields)

    def _accept(self, h: BaseHTTPRequestHandler, body: bytes, call: Call) -> None:
        """Check the path, the signature and the body, in that order; fill in call.params."""
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

    def _authenticate(self, h: BaseHTTPRequestHandler, body: bytes, call: Call) -> None:
        headers = h.headers
        if not call.action:
            raise ApiError("MissingParameter", "The request is missing X-TC-Action.")
        if headers.get("X-TC-Version") != self.version:
            raise ApiError("NoSuchVersion", f"Version must be {self.version}.")
        timestamp = signing.check_timestamp(headers.get("X-TC-Timestamp", ""))
        auth = signing.parse_authorization(headers.get("Authorization", ""))
        call.secret_id = auth.secret_id
        secret_key = self.keys.get(auth.secret_id)
        if secret_key is None:
            raise ApiError("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        signing.check_signature(
            auth,
            secret_key,
            service=self.service,
            method=h.command,
            headers=headers,
            body=body,
            timestamp=timestamp,
        )
        with self._cond:
            granted = self.tokens.get(auth.secret_id)
        if granted is not None:
            token, expires = granted
            if call.token != token or time.time() >= expires:
                raise ApiError("AuthFailure.TokenFailure", "The token is invalid or expired.")
        call.signature_ok = True

    def _take_script(self, call: Call) -> dict[str, Any]:
        """The next scripted answer for the call's action ({} for none); the call has arrived."""
        with self._cond:
            queue = self._scripts.get(call.action)
            answer = queue.popleft() if queue else {}
            self.arrived.append(call)  # before any scripted delay: the call is in flight
            self._cond.notify_all()
        call.scripted = answer or None
        return answer

    def _run(self, call: Call, answer: dict[str, Any]) -> dict[str, Any]:
        """The response fields: the action's, unless a scripted answer replaces its work."""
        time.sleep(answer.get("delay", 0))
        fields: dict[str, Any] = {}
        # Scripted replies replace the server's work unless "apply" says otherwise.
        if answer.get("apply", not {"error", "http_status", "raw"} & answer.keys()):
            fields, call.effect = self._dispatch(call)
        if "error" in answer:
            raise ApiError(answer["error"], answer.get("message", "scripted error"))
        return fields

    def _dispatch(self, call: Call) -> Answer:
        """Run one action from the actions table."""
        handler = self.actions.get(call.action)
        if handler is None:
            raise ApiError("InvalidAction", f"The action `{call.action}` is not found.")
        return handler(self, call.params)

    def _reply(
        self,
        h: BaseHTTPRequestHandler,
        call: Call,
        answer: dict[str, Any],
        fields: dict[str, Any],
    ) -> None:
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
