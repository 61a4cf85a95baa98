"""The composition root: wires settings, policy, store, DBbrain and Slack into one running bot.

One process per replica: Bolt's listeners ack, the in-process pool (bot.background) does what
comes after the ack, and the clock (bot.clock) runs on threads of the same process.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot import metrics
from bot.background import Background
from bot.clock import Clock, Ticker
from bot.config import Settings
from bot.credentials import Credentials
from bot.dbbrain import RATE_WINDOW, AllLimits, DbbrainGateway, RateLimiter, split_endpoint
from bot.estate import Estate
from bot.health import Readiness
from bot.policy import Policy, PolicyError, load_policy, policy_hash
from bot.service import KillTaskService
from bot.slack.adapters import SlackMembership, SlackNotifier
from bot.slack.handlers import Handlers
from bot.slack.home import Home
from bot.slack.picking import Picking
from bot.slack.routes import register
from bot.store import SharedRateLimit, Store, make_engine

log = logging.getLogger(__name__)


@dataclass
class Bot:
    app: App
    service: KillTaskService
    background: Background
    ticker: Ticker
    readiness: Readiness
    policy_file: str

    def start(self) -> None:
        self.readiness.start()
        self.ticker.start()

    def shutdown(self) -> None:
        """Finish the work already acked, then stop the clock."""
        self.background.shutdown()
        self.ticker.stop()
        self.readiness.stop()

    def reload_policy(self) -> bool:
        """Read POLICY_FILE again (SIGHUP). A bad file changes nothing: the old policy stays."""
        try:
            policy = load_policy(self.policy_file)
        except PolicyError as exc:
            log.error(
                "policy_reload_refused file=%s problem=%r kept=previous", self.policy_file, str(exc)
            )
            return False
        self.service.policy = policy
        log.info("policy_loaded file=%s hash=%s", self.policy_file, policy_hash(self.policy_file))
        return True


def web_client(settings: Settings, timeout: int = 10) -> WebClient:
    # No retry on a dropped connection: Slack may have taken the call (a card posted twice).
    return WebClient(
        token=settings.slack_bot_token.reveal(),
        base_url=settings.slack_api_url,
        timeout=timeout,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )


def process_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def build_service(settings: Settings, policy: Policy) -> tuple[KillTaskService, SlackNotifier]:
    store = Store(make_engine(settings.database_url.reveal()), on_audit=metrics.audited)
    client = web_client(settings)

    def current() -> Policy:
        """The service's policy, read on each call, so a reload (SIGHUP) applies at once."""
        return service.policy

    keys = None
    if settings.tencent_secret_id and settings.tencent_secret_key:
        token = settings.tencent_session_token
        keys = (
            settings.tencent_secret_id.reveal(),
            settings.tencent_secret_key.reveal(),
            token.reveal() if token else None,
        )
    credentials = Credentials(
        lambda: current().accounts,
        keys,
        split_endpoint(settings.sts_endpoint),
        timeout=settings.dbbrain_timeout,
    )
    estate = Estate(store, accounts=lambda: current().accounts, pins=lambda: current().regions)
    cloud = DbbrainGateway(
        endpoint=settings.dbbrain_endpoint,
        timeout=settings.dbbrain_timeout,
        limiter=AllLimits(RateLimiter(), SharedRateLimit(store.engine, window=RATE_WINDOW)),
        credentials=credentials,
        locate=estate.locate,
    )
    estate.lister = cloud
    notifier = SlackNotifier(client, api_url=settings.slack_api_url)
    # Group lookups run before the ack: a short timeout keeps the ack inside Slack's 3 s.
    membership = SlackMembership(web_client(settings, timeout=2))
    service = KillTaskService(
        store, cloud, policy, notifier, membership, process_id=process_id(), estate=estate
    )
    notifier.requirement = lambda spec: service.policy.requirement(spec)  # read per card
    return service, notifier


def build_bot(settings: Settings, policy: Policy) -> Bot:
    service, notifier = build_service(settings, policy)
    app = App(
        client=notifier.client,
        signing_secret=settings.slack_signing_secret.reveal() or None,
        # __main__ asked Slack once at start (auth.test); no need to ask again
        token_verification_enabled=False,
        # HTTP mode checks signatures over the raw bytes before Bolt parses anything
        # (bot.slack.verify); Socket Mode has none. Bolt's own check would also log the whole
        # body of a forged request.
        request_verification_enabled=False,
        # Each handler acks, hands what follows to bot.background and returns: the answer goes
        # out as the handler returns. (Otherwise Bolt runs the handler on a thread of its own
        # and looks for the ack every 10 ms, which rounds every ack up to the next 10 ms.)
        process_before_response=True,
    )
    background = Background()

    def beside(job: Callable[[], None]) -> None:
        """A card update that need not hold anything up ("starting", beside CreateKillTask).
        Dropped or failed, it leaves the card marked behind, and the clock catches it up."""
        background.submit(job, lambda _exc: None, "card_update", "slack")

    service.cards.on_the_side = beside
    register(
        app, Handlers(service, notifier, background), Picking(service, notifier, background),
        Home(service, notifier, background),
    )  # fmt: skip
    clock = Clock(
        service,
        heartbeat_grace=max(5 * settings.tick_seconds, 2.0),
        starting_timeout=settings.dbbrain_timeout * 4 + 10,
        on_counts=metrics.open_counts,
    )
    return Bot(
        app=app,
        service=service,
        background=background,
        ticker=Ticker(clock, settings.tick_seconds),
        readiness=Readiness(service.store.ping),
        policy_file=settings.policy_file,
    )
