"""HTTP mode: Bolt behind gunicorn (one threaded worker), with /slack/events beside /healthz,
/readyz and /metrics.

The worker is the replica's one process that does the work: it acks, runs what comes after the
ack on its own pool and runs the clock. gunicorn's master only starts it again if it dies.
SIGHUP reloads the policy in the worker (gunicorn would otherwise restart its workers).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger as GunicornLogger

from bot.config import Settings
from bot.policy import Policy

if TYPE_CHECKING:  # the bot itself is imported in the worker only: the master stays small
    from bot.app import Bot
    from bot.health import WsgiApp

log = logging.getLogger(__name__)


def wsgi_app(bot: Bot, signing_secret: str) -> WsgiApp:
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    from bot.health import health_app
    from bot.slack.verify import verified

    slack = verified(SlackRequestHandler(bot.app), signing_secret)

    def events(environ, start_response):  # type: ignore[no-untyped-def]
        if environ.get("PATH_INFO") == "/slack/events" and environ.get("REQUEST_METHOD") == "POST":
            return slack(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return health_app(bot.readiness, events)


class _Arbiter(Arbiter):
    # The worker checks Slack's token and the database before it serves (bot.__main__); when it
    # cannot start, it exits 2 after saying why, and the master stops with the same status
    # instead of starting it again and again.
    WORKER_BOOT_ERROR = 2

    def handle_hup(self) -> None:
        """Pass SIGHUP to the worker, which re-reads the policy; restart nothing."""
        self.log.info("Passing SIGHUP to the worker: reloading the policy")
        self.kill_workers(signal.SIGHUP)


class _Log(GunicornLogger):
    """gunicorn's own lines go through the bot's logging: the same format (key=value or JSON)
    and the same secret filter."""

    def setup(self, cfg) -> None:  # type: ignore[no-untyped-def]
        self.error_log.handlers = []
        self.error_log.propagate = True
        self.error_log.setLevel(logging.WARNING)
        self.access_log.handlers = []
        self.access_log.propagate = False


class _Server(BaseApplication):
    def __init__(self, settings: Settings, policy: Policy, prepare: Callable[[], None]):
        self.settings = settings
        self.policy = policy
        self.prepare = prepare  # run in the worker: the master never loads what it needs
        self.bot: Bot | None = None
        super().__init__()

    def load_config(self) -> None:
        holder = self

        def worker_exit(_server, _worker) -> None:  # type: ignore[no-untyped-def]
            if holder.bot is not None:
                holder.bot.shutdown()  # finish what was acked before the worker goes

        options = {
            "bind": f"{self.settings.host}:{self.settings.port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": 16,
            "timeout": 60,
            "graceful_timeout": 30,
            "keepalive": 5,
            "accesslog": None,
            "logger_class": _Log,
            "worker_exit": worker_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):  # type: ignore[no-untyped-def]
        # Built in the worker, after the fork, so its threads and connections live there.
        self.prepare()
        from bot.app import build_bot

        bot = self.bot = build_bot(self.settings, self.policy)
        bot.start()

        def reload(_signum, _frame) -> None:  # type: ignore[no-untyped-def]
            threading.Thread(target=bot.reload_policy, name="policy-reload").start()

        signal.signal(signal.SIGHUP, reload)
        log.info("worker_ready pid=%s", os.getpid())
        # What start-up built lives as long as the worker: keep the collector from walking it
        # again and again, which it would do mid-request (tens of thousands of objects).
        gc.freeze()
        return wsgi_app(bot, self.settings.slack_signing_secret.reveal())

    def run(self) -> None:
        _Arbiter(self).run()


def serve(settings: Settings, policy: Policy, prepare: Callable[[], None]) -> None:
    """Serve HTTP; `prepare` (the start-up checks) runs in the worker, before the bot."""
    _Server(settings, policy, prepare).run()
