"""The composition root: wires settings, policy, store, DBbrain and Slack into one running bot."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.config import Settings
from bot.dbbrain import RATE_WINDOW, AllLimits, DbbrainGateway, RateLimiter
from bot.policy import Policy
from bot.service import KillTaskService
from bot.slack import register
from bot.slack.adapters import SlackMembership, SlackNotifier
from bot.slack.handlers import Handlers
from bot.slack.jobs import JobRunner, decode
from bot.store import SharedRateLimit, Store, make_engine
from bot.work import WorkChannel

log = logging.getLogger(__name__)


class Ticker:
    """Runs the service's tick (expiry, finish, card catch-up) every few seconds."""

    def __init__(self, service: KillTaskService, every: float):
        self.service = service
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.service.tick()
            except Exception:
                log.exception("tick_failed")


@dataclass
class Bot:
    """The process answering Slack: it checks, acks and hands the rest to the work process."""

    app: App
    service: KillTaskService
    store: Store
    executor: ThreadPoolExecutor
    channel: WorkChannel

    def shutdown(self) -> None:
        """Let every request already being answered hand its job over, then hang up."""
        self.executor.shutdown(wait=True)
        self.channel.close()


@dataclass
class Worker:
    """The work process's parts: it runs the jobs and the clock."""

    service: KillTaskService
    runner: JobRunner
    ticker: Ticker

    def run(self, frame: bytes) -> None:
        self.runner.run(decode(frame))

    def start(self) -> None:
        self.service.store.heartbeat(self.service.process_id)
        self.ticker.start()

    def stop(self) -> None:
        self.ticker.stop()


def web_client(settings: Settings) -> WebClient:
    client = WebClient(
        token=settings.slack_bot_token.reveal(), base_url=settings.slack_api_url, timeout=10
    )
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    return client


def build_service(settings: Settings, policy: Policy) -> tuple[KillTaskService, SlackNotifier]:
    store = Store(make_engine(settings.database_url.reveal()))
    client = web_client(settings)
    cloud = DbbrainGateway(
        settings.tencent_secret_id.reveal(),
        settings.tencent_secret_key.reveal(),
        settings.tencent_session_token.reveal() if settings.tencent_session_token else None,
        settings.tencent_region,
        settings.dbbrain_endpoint,
        timeout=settings.dbbrain_timeout,
        limiter=AllLimits(RateLimiter(), SharedRateLimit(store.engine, window=RATE_WINDOW)),
    )
    notifier = SlackNotifier(client, policy.approval.required)
    service = KillTaskService(
        store,
        cloud,
        policy,
        notifier,
        SlackMembership(client),
        # Longest a start can honestly take: every try timing out, plus the backoff between.
        starting_timeout=settings.dbbrain_timeout * 4 + 10,
        process_id=f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        heartbeat_grace=max(5 * settings.tick_seconds, 2.0),
    )
    return service, notifier


def build_bot(settings: Settings, policy: Policy, channel: WorkChannel) -> Bot:
    # The service here only answers the modal's policy check before the form closes.
    service, notifier = build_service(settings, policy)
    executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="slack-listener")
    app = App(
        client=notifier.client,
        signing_secret=settings.slack_signing_secret.reveal() or None,
        listener_executor=executor,
        # __main__ asked Slack once at start (auth.test); the worker need not ask again
        token_verification_enabled=False,
    )
    register(app, Handlers(service, notifier, channel))
    return Bot(app, service, service.store, executor, channel)


def build_worker(settings: Settings, policy: Policy) -> Worker:
    service, notifier = build_service(settings, policy)
    return Worker(service, JobRunner(service, notifier), Ticker(service, settings.tick_seconds))
