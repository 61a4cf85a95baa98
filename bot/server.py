"""HTTP mode: Bolt behind gunicorn (threaded worker), with /slack/events and /healthz.

One server worker with threads answers Slack; the work process (`bot.work`), started by the
main process (gunicorn's master) before it serves and stopped after its worker, does what the
acks hand over. Run more replicas for more capacity; they share the database.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable

from gunicorn.app.base import BaseApplication
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.app import Bot, build_bot
from bot.config import Settings
from bot.policy import Policy
from bot.work import WorkChannel, WorkProcess

log = logging.getLogger(__name__)


def wsgi_app(app: App, ready: Callable[[], bool] = lambda: True):  # type: ignore[no-untyped-def]
    slack = SlackRequestHandler(app)

    def application(environ, start_response):  # type: ignore[no-untyped-def]
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            if not ready():  # acks would only say "try again": do not take traffic yet
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"work process not ready\n"]
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/slack/events" and environ.get("REQUEST_METHOD") == "POST":
            if not _has_signature_headers(environ):
                # Bolt would fail with a 500 on an empty timestamp; a missing signature is a 401.
                start_response("401 Unauthorized", [("Content-Type", "text/plain")])
                return [b"missing Slack signature\n"]
            return slack(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return application


def _has_signature_headers(environ: dict) -> bool:
    timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
    signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
    return timestamp.isdigit() and signature.startswith("v0=")


class _Server(BaseApplication):
    def __init__(self, settings: Settings, policy: Policy, work: WorkProcess | None = None):
        self.settings = settings
        self.policy = policy
        self.work = work
        self.bot: Bot | None = None
        super().__init__()

    def load_config(self) -> None:
        bot_holder = self

        def worker_exit(_server, _worker) -> None:  # type: ignore[no-untyped-def]
            if bot_holder.bot is not None:
                bot_holder.bot.shutdown()

        def on_exit(_server) -> None:  # type: ignore[no-untyped-def]
            # The master, after its worker is gone: every job is handed over; let them finish.
            if bot_holder.work is not None:
                bot_holder.work.stop()

        options = {
            "bind": f"{self.settings.host}:{self.settings.port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": 16,
            "timeout": 60,
            "graceful_timeout": 30,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
            "worker_exit": worker_exit,
            "on_exit": on_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):  # type: ignore[no-untyped-def]
        # Built in the worker, after the fork, so its threads and connections live there.
        assert self.work is not None
        self.bot = build_bot(self.settings, self.policy, WorkChannel(self.work.path))
        # What start-up built lives as long as the worker: keep the collector from walking it
        # again and again, which it would do mid-request (tens of thousands of objects).
        gc.freeze()
        return wsgi_app(self.bot.app, self.bot.channel.ready)


def serve(settings: Settings, policy: Policy, work: WorkProcess) -> None:
    _Server(settings, policy, work).run()
