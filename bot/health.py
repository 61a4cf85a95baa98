"""Health and metrics over HTTP: /healthz (liveness), /readyz (readiness), /metrics.

Probes never wait on work: readiness is checked on a thread of its own (a database ping every
second, and in Socket Mode whether the WebSocket is connected), so a probe reads two values and
answers in microseconds. A ping that hangs simply goes stale, and the replica reads as not ready.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from bot import metrics

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]
PATHS = ("/healthz", "/readyz", "/metrics")


class Readiness:
    def __init__(
        self,
        ping: Callable[[], None],
        every: float = 1.0,
        fresh_for: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ping = ping
        self.every = every
        self.fresh_for = fresh_for  # a ping older than this no longer vouches for the database
        self.clock = clock
        self.connected: Callable[[], bool] | None = None  # Socket Mode's WebSocket, when used
        self._last_ok: float | None = None
        self._problem = "starting"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readiness", daemon=True)

    def start(self) -> None:
        self.check_once()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check_once(self) -> None:
        try:
            self.ping()
        except Exception as exc:
            if self._problem != str(exc):
                log.warning("database_not_ready error=%s", exc)
            self._problem = str(exc) or type(exc).__name__
            return
        self._last_ok, self._problem = self.clock(), ""

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.check_once()

    def state(self) -> tuple[bool, str]:
        """(ready, why not)."""
        last = self._last_ok
        if last is None or self.clock() - last > self.fresh_for:
            return False, f"database: {self._problem or 'no answer to the last ping'}"
        if self.connected is not None and not self.connected():
            return False, "Slack Socket Mode: not connected"
        return True, "ready"


def health_app(readiness: Readiness, inner: WsgiApp | None = None) -> WsgiApp:
    """The three GET paths, in front of `inner` (the Slack endpoint), or alone."""

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in PATHS or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            if inner is not None:
                return inner(environ, start_response)
            return _answer(start_response, "404 Not Found", b"not found\n")
        if path == "/healthz":
            return _answer(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            ready, why = readiness.state()
            status = "200 OK" if ready else "503 Service Unavailable"
            return _answer(start_response, status, f"{why}\n".encode())
        body, content_type = metrics.exposition()
        return _answer(start_response, "200 OK", body, content_type)

    return application


def _answer(
    start_response: Callable, status: str, body: bytes, content_type: str = "text/plain"
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # probes every few seconds
        pass


def serve_health(host: str, port: int, app: WsgiApp) -> Callable[[], None]:
    """A small HTTP listener for Socket Mode, on a thread; returns how to stop it."""
    server = make_server(host, port, app, _ThreadingServer, _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.2,), name="health", daemon=True)
    thread.start()
    log.info("health_listening port=%s paths=%s", port, ",".join(PATHS))

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop
