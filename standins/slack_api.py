"""A fake Slack Web API (and Socket Mode endpoint) on loopback, for tests and rehearsals.

The bot reaches it through ``SLACK_API_URL`` (``WebClient(base_url=fake.url)``). Every call is
recorded, answered the way Slack answers it, and can be made to fail on purpose with ``script``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

# Form-encoded clients send these as JSON strings; tests want Python objects.
_JSON_FIELDS = {"blocks", "attachments", "view", "metadata", "unfurls", "user_auth_blocks", "files"}


@dataclass
class SlackCall:
    method: str  # "chat.postMessage", or "response_url" for posts to hook_url()
    args: dict[str, Any]
    token: str | None
    at: float  # arrival time (time.time())
    fault: dict[str, Any] | None = None  # the scripted answer used, if any
    response: dict[str, Any] | None = None  # the JSON body sent back


def _decode_fields(args: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_FIELDS & args.keys():
        if isinstance(args[key], str):
            # Unparseable: keep what the client sent; Slack would reject it, the test can see it.
            with contextlib.suppress(ValueError):
                args[key] = json.loads(args[key])
    return args


class FakeSlack:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_token: str = "xoxb-test-token",
        app_token: str = "xapp-test-token",
        usergroups: dict[str, list[str]] | None = None,
    ) -> None:
        self.host, self.bot_token, self.app_token = host, bot_token, app_token
        self.usergroups: dict[str, list[str]] = {k: list(v) for k, v in (usergroups or {}).items()}
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        # files_upload_v2: file id -> what getUploadURLExternal was told, and the bytes that
        # arrived at the upload URL it handed out (a loopback URL on this stand-in).
        self.files: dict[str, dict[str, Any]] = {}
        self.homes: dict[str, dict[str, Any]] = {}  # the last App Home published per user
        self._calls: list[SlackCall] = []
        self._scripts: dict[str, deque[dict[str, Any]]] = {}
        self._ts_counter = 0
        self._view_counter = 0
        self._cond = threading.Condition()  # guards all state above; notified on each new call
        self._http = ThreadingHTTPServer((host, port), self._handler_class())
        self._http.daemon_threads = True  # a hung ("hang") call must not block shutdown
        self._http_thread: threading.Thread | None = None
        # Socket Mode side, started on the first apps.connections.open.
        self._ws: Server | None = None
        self._ws_conns: list[ServerConnection] = []
        self._acks: dict[str, dict[str, Any]] = {}
        self._stopped = False

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, args=(0.05,), name="fake-slack-http", daemon=True
        )
        self._http_thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True  # so a reconnecting client cannot restart the WebSocket server
            ws, self._ws = self._ws, None
        self._http.shutdown()
        self._http.server_close()
        if ws is not None:
            ws.shutdown()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._http.server_address[1]}/api/"

    def hook_url(self, name: str = "response") -> str:
        """A response_url pointing here; posts to it are recorded as method "response_url"."""
        return f"http://{self.host}:{self._http.server_address[1]}/hooks/{name}"

    # ---- recorded calls ----------------------------------------------------------------------

    @property
    def calls(self) -> list[SlackCall]:
        with self._cond:
            return list(self._calls)

    def calls_of(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    def wait_for(
        self,
        method: str,
        predicate: Callable[[SlackCall], bool] = lambda call: True,
        timeout: float = 5.0,
    ) -> SlackCall:
        """Block until a call of ``method`` matching ``predicate`` was recorded; return it."""

        def find() -> SlackCall | None:
            return next((c for c in self._calls if c.method == method and predicate(c)), None)

        with self._cond:
            found = self._cond.wait_for(find, timeout)
            if found is not None:
                return found
            seen = Counter(c.method for c in self._calls)
            same = [c.args for c in self._calls if c.method == method]
        raise AssertionError(
            f"no matching {method} call within {timeout}s; methods seen: {dict(seen) or 'none'}"
            + "".join(f"\n  {method} args: {args!r:.300}" for args in same)
        )

    def reset(self) -> None:
        """Forget calls, messages and scripts (ts and view ids keep increasing)."""
        with self._cond:
            self._calls.clear()
            self.messages.clear()
            self.homes.clear()
            self._scripts.clear()
            self._acks.clear()

    def script(
        self,
        method: str,
        *answers: dict[str, Any],
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Queue answers for the next calls of ``method``, one per call.

        ``{"status": 429, "retry_after": 1}`` / ``{"status": 500}``: that HTTP status;
        ``{"hang": 3.0}``: sleep, then answer normally (or per "status" if also given);
        any other dict: the JSON answer itself. With ``when``, only calls whose args it accepts
        use these answers, so a stray call from earlier work cannot eat a test's fault.
        """
        with self._cond:
            queue = self._scripts.setdefault(method, deque())
            queue.extend({**answer, "_when": when} if when else answer for answer in answers)

    def _take_script(self, method: str, args: dict[str, Any]) -> dict[str, Any] | None:
        queue = self._scripts.get(method) or deque()
        for answer in list(queue):
            when = answer.get("_when")
            if when is None or when(args):
                queue.remove(answer)
                return {k: v for k, v in answer.items() if k != "_when"}
        return None

    # ---- message state -----------------------------------------------------------------------

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self._cond:
            return self.messages.get((channel, ts))

    def thread_replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Latest state of the replies in a thread, oldest first, each with its "ts"."""
        with self._cond:
            return [
                {"ts": ts, **state}
                for (ch, ts), state in sorted(self.messages.items())
                if ch == channel and state.get("thread_ts") == thread_ts
            ]

    def ephemerals(self, user: str | None = None) -> list[dict[str, Any]]:
        return [
            c.args
            for c in self.calls_of("chat.postEphemeral")
            if user is None or c.args.get("user") == user
        ]

    # ---- the HTTP side -----------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the real thing

            def do_POST(self) -> None:  # http.server's naming
                fake._serve(self)

            do_GET = do_POST  # Slack accepts GET too

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        return Handler

    def upload_url(self, file_id: str) -> str:
        return f"http://{self.host}:{self._http.server_address[1]}/upload/{file_id}"

    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        arrived = time.time()
        parts = urlsplit(req.path)
        if parts.path.startswith("/upload/"):
            return self._serve_upload(req, parts.path.removeprefix("/upload/"), arrived)
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0)).decode("utf-8")
        args: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
        if "json" in (req.headers.get("Content-Type") or ""):
            args.update(json.loads(body or "{}"))
        else:
            args.update(parse_qsl(body, keep_blank_values=True))
        _decode_fields(args)
        body_token = args.pop("token", None)  # old clients put it in the body, not a header
        token = (req.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        token = token or body_token
        if parts.path.startswith("/api/"):
            method = parts.path.removeprefix("/api/")
        else:  # a response_url from hook_url()
            method, args["_path"] = "response_url", parts.path

        with self._cond:
            fault = self._take_script(method, args)
        call = SlackCall(method, args, token, arrived, fault)
        hang = fault is not None and "hang" in fault
        if hang:
            with self._cond:  # recorded on arrival, so tests can see the bot waiting on it
                self._calls.append(call)
                self._cond.notify_all()
            time.sleep(float((fault or {})["hang"]))
        status, headers, answer = 200, dict[str, str](), None
        if fault is not None and "status" in fault:
            status = int(fault["status"])
            default_error = "ratelimited" if status == 429 else "internal_error"
            answer = {"ok": False, "error": fault.get("error", default_error)}
            if "retry_after" in fault:
                headers["Retry-After"] = str(fault["retry_after"])
        elif fault is not None and not hang:
            answer = dict(fault)
        with self._cond:
            # Answer and record under one lock: whoever wait_for()s the call sees its effects.
            call.response = answer if answer is not None else self._answer(method, args, token)
            if not hang:
                self._calls.append(call)
            self._cond.notify_all()

        data = json.dumps(call.response).encode("utf-8")
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=utf-8")
        req.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(data)

    def _serve_upload(self, req: BaseHTTPRequestHandler, file_id: str, arrived: float) -> None:
        """Step 2 of files_upload_v2: the file's bytes, POSTed to the URL handed out. Recorded
        as method "upload" (args: file_id, length); script("upload", {"status": 500}) fails it."""
        data = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        args = {"file_id": file_id, "length": len(data)}
        with self._cond:
            fault = self._take_script("upload", args)
            status = int((fault or {}).get("status", 200))
            known = file_id in self.files
            if known and status == 200:
                self.files[file_id]["data"] = data
            status = status if known else 404
            self._calls.append(SlackCall("upload", args, None, arrived, fault, {"status": status}))
            self._cond.notify_all()
        body = f"OK - {len(data)}".encode() if status == 200 else b"upload failed"
        req.send_response(status)
        req.send_header("Content-Type", "text/plain; charset=utf-8")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _files(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        """files.getUploadURLExternal and files.completeUploadExternal; caller holds _cond."""
        if method == "files.getUploadURLExternal":
            if not args.get("filename") or not str(args.get("length", "")).isdigit():
                return {"ok": False, "error": "invalid_arguments"}
            file_id = f"F{uuid.uuid4().hex[:10].upper()}"
            self.files[file_id] = {"filename": args["filename"], "length": int(args["length"])}
            return {"ok": True, "upload_url": self.upload_url(file_id), "file_id": file_id}
        listed = args.get("files") if isinstance(args.get("files"), list) else []
        found = [self.files.get(str(f.get("id"))) for f in listed]
        if not listed or any(f is None or "data" not in f for f in found):
            return {"ok": False, "error": "invalid_arguments"}
        channel, ts = str(args.get("channel_id", "")), self._next_ts()
        for item, file in zip(listed, found, strict=True):
            file |= {"title": item.get("title"), "channel": channel, "ts": ts}  # type: ignore[operator]
            file["thread_ts"] = args.get("thread_ts")  # type: ignore[index]
        self.messages[(channel, ts)] = {
            "text": args.get("initial_comment", ""), "blocks": None,
            "thread_ts": args.get("thread_ts") or None, "files": [f["id"] for f in listed],
        }  # fmt: skip
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in listed]}

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        """The channel's top-level messages since `oldest`, newest first, as Slack lists them
        (metadata only with include_all_metadata). One page: the tests never need a second."""
        channel, oldest = str(args.get("channel", "")), float(args.get("oldest") or 0)
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        found = []
        for (where, ts), message in self.messages.items():
            if where != channel or message.get("thread_ts") or float(ts) < oldest:
                continue
            item = {"type": "message", "user": "UBOT", "bot_id": "BBOT", "ts": ts}
            item["text"] = message.get("text", "")
            if with_metadata and message.get("metadata"):
                item["metadata"] = message["metadata"]
            found.append(item)
        found.sort(key=lambda item: float(item["ts"]), reverse=True)
        return {"ok": True, "messages": found, "has_more": False}

    def _next_ts(self) -> str:
        """Like Slack's: the time of posting in microseconds, unique within the workspace."""
        self._ts_counter = max(int(time.time() * 1_000_000), self._ts_counter + 1)
        return f"{self._ts_counter // 1_000_000}.{self._ts_counter % 1_000_000:06d}"

    def _answer(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        """Slack's answer to a well-formed call; caller holds self._cond."""
        if method == "response_url":
            return {"ok": True}
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token not in (self.bot_token, self.app_token):
            return {"ok": False, "error": "invalid_auth"}
        if (method == "apps.connections.open") != (token == self.app_token):
            return {"ok": False, "error": "not_allowed_token_type"}

        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://test.slack.com/",
                "team": "Test",
                "user": "killtask",
                "team_id": "T0TEST",
                "user_id": "UBOT",
                "bot_id": "BBOT",
                "is_enterprise_install": False,
            }
        if method == "chat.postMessage":
            channel, ts = str(args.get("channel", "")), self._next_ts()
            thread_ts = args.get("thread_ts") or None
            text, blocks = args.get("text", ""), args.get("blocks")
            self.messages[(channel, ts)] = {"text": text, "blocks": blocks, "thread_ts": thread_ts}
            if args.get("metadata"):
                self.messages[(channel, ts)]["metadata"] = args["metadata"]
            message = {"type": "message", "user": "UBOT", "bot_id": "BBOT", "text": text, "ts": ts}
            if blocks is not None:
                message["blocks"] = blocks
            if thread_ts:
                message["thread_ts"] = thread_ts
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            channel, ts = str(args.get("channel", "")), str(args.get("ts", ""))
            # Unknown ts is accepted: tests often click buttons on messages they never posted.
            state = self.messages.setdefault((channel, ts), {"text": "", "blocks": None})
            state.setdefault("thread_ts", None)
            for key in ("text", "blocks"):
                if key in args:
                    state[key] = args[key]
            return {"ok": True, "channel": channel, "ts": ts, "text": state["text"]}
        if method == "chat.getPermalink":
            channel, ts = str(args.get("channel", "")), str(args.get("message_ts", ""))
            if (channel, ts) not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            link = f"https://test.slack.com/archives/{channel}/p{ts.replace('.', '')}"
            return {"ok": True, "channel": channel, "permalink": link}
        if method in ("files.getUploadURLExternal", "files.completeUploadExternal"):
            return self._files(method, args)
        if method == "conversations.history":
            return self._history(args)
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method in ("views.open", "views.update", "views.push"):
            view = args.get("view") if isinstance(args.get("view"), dict) else {}
            view_id = args.get("view_id")
            if not view_id:
                self._view_counter += 1
                view_id = f"V{self._view_counter:07d}"
            return {"ok": True, "view": {**view, "id": view_id, "hash": uuid.uuid4().hex[:12]}}
        if method == "views.publish":
            user = str(args.get("user_id", ""))
            view = args.get("view") if isinstance(args.get("view"), dict) else {}
            if not user.startswith(("U", "W")) or view.get("type") != "home":
                return {"ok": False, "error": "invalid_arguments"}
            self.homes[user] = view
            return {"ok": True, "view": {**view, "id": f"VH{user}"}}
        if method == "chat.getPermalink":
            channel, ts = str(args.get("channel", "")), str(args.get("message_ts", ""))
            if (channel, ts) not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            return {
                "ok": True,
                "channel": channel,
                "permalink": f"https://test.slack.com/archives/{channel}/p{ts.replace('.', '')}",
            }
        if method == "usergroups.users.list":
            group = args.get("usergroup")
            if group not in self.usergroups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": list(self.usergroups[group])}
        if method == "users.info":
            user = str(args.get("user", ""))
            return {
                "ok": True,
                "user": {
                    "id": user,
                    "team_id": "T0TEST",
                    "name": user.lower(),
                    "real_name": user,
                    "is_bot": False,
                    "deleted": False,
                    "tz": "UTC",
                    "profile": {"real_name": user, "display_name": user.lower()},
                },
            }
        if method == "apps.connections.open":
            if self._stopped:
                return {"ok": False, "error": "internal_error"}
            return {"ok": True, "url": f"ws://{self.host}:{self._ensure_ws()}/link"}
        return {"ok": True}

    # ---- the Socket Mode side ----------------------------------------------------------------

    def _ensure_ws(self) -> int:
        """Start the WebSocket server once; return its port. Caller holds self._cond."""
        if self._ws is None:
            # close_timeout is short: the SDK client drops the socket without a close handshake.
            self._ws = serve(self._ws_session, self.host, 0, close_timeout=1, compression=None)
            threading.Thread(
                target=self._ws.serve_forever, name="fake-slack-ws", daemon=True
            ).start()
        return int(self._ws.socket.getsockname()[1])

    def _ws_session(self, conn: ServerConnection) -> None:
        conn.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {},
                    "connection_info": {"app_id": "A0TEST"},
                }
            )
        )
        with self._cond:
            self._ws_conns.append(conn)
            self._cond.notify_all()
        try:
            for raw in conn:  # the client only ever sends acks (pings are handled below us)
                with contextlib.suppress(ValueError, KeyError, TypeError):  # not an ack: ignore
                    ack = json.loads(raw)
                    with self._cond:
                        self._acks[str(ack["envelope_id"])] = ack
                        self._cond.notify_all()
        except ConnectionClosed:
            pass  # the SDK client drops its socket without a close frame; that is its normal exit
        finally:
            with self._cond:
                self._ws_conns.remove(conn)
                self._cond.notify_all()

    def _live_conn(self) -> ServerConnection | None:
        return self._ws_conns[-1] if self._ws_conns else None  # newest wins, like Slack

    def socket_connected(self, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(self._live_conn, timeout) is not None

    def socket_send(
        self, payload_type: str, payload: dict[str, Any], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Send one envelope to the connected client and return its ack."""
        deadline = time.monotonic() + timeout
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": payload_type,
            "payload": payload,
            "accepts_response_payload": True,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        with self._cond:
            conn = self._cond.wait_for(self._live_conn, timeout)
        if conn is None:
            raise AssertionError(f"no Socket Mode client connected within {timeout}s")
        conn.send(json.dumps(envelope))
        with self._cond:
            ack = self._cond.wait_for(
                lambda: self._acks.pop(envelope_id, None), max(0.0, deadline - time.monotonic())
            )
        if ack is None:
            raise AssertionError(f"no ack for {payload_type} envelope {envelope_id} in {timeout}s")
        return ack
