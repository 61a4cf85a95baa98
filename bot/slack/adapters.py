"""The Slack side of the service's ports: showing cards and replies, and reading user groups.

Slack failures never raise out of here: a decision is already stored when Slack is asked to
show it, and the clock catches a card up later. Whatever the failure (an error answer, a
timeout, a dropped connection), it is logged, counted, and turned into data the caller reads.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot import metrics
from bot.outcomes import Announcement, CardPost, EffectSummary, Happening
from bot.requests import KillRequest
from bot.rules import Requirement
from bot.slack import blocks, messages

log = logging.getLogger(__name__)

CARD_EVENT = "killtask_card"  # the metadata event type that marks a message as a request's card
SLACK_HOOK_HOSTS = ("hooks.slack.com", "hooks.slack-gov.com")
HISTORY_PAGES = 5  # how far back to look for a card whose post went unanswered
# What the requester hears of in a direct message (besides APPROVED, which only they hear).
DIRECT = frozenset(
    {Happening.REJECTED, Happening.EXPIRED, Happening.STARTED, Happening.START_FAILED,
     Happening.FINISHED, Happening.STOPPED}
)  # fmt: skip
_PERMALINK = re.compile(r"^https://[A-Za-z0-9.\-]+/[A-Za-z0-9/._\-?=&%]*$")


class SlackNotifier:
    def __init__(
        self, client: WebClient, requirement=lambda spec: Requirement(1), api_url: str = ""
    ):  # type: ignore[no-untyped-def]
        self.client = client
        self.requirement = requirement  # read per card: the policy may reload
        # Called after each piece of news, to republish App Home for the people concerned.
        self.on_news = lambda request, news: None
        # response_url is taken from the request; only Slack's own hosts (or the API's, in
        # tests and rehearsals) may receive what the bot says through it.
        self.hook_hosts = {*SLACK_HOOK_HOSTS, urlsplit(api_url).hostname or "slack.com"}

    def _blocks(self, request: KillRequest) -> list[dict]:
        return blocks.card(request, self.requirement(request.spec))

    def post_card(self, request: KillRequest) -> CardPost:
        try:
            response = self.client.chat_postMessage(
                channel=request.channel_id,
                text=blocks.card_text(request),
                blocks=self._blocks(request),
                metadata={"event_type": CARD_EVENT, "event_payload": {"request": request.id}},
            )
        except SlackApiError as exc:
            error = _error_code(exc)
            _failed("chat.postMessage", request, error)
            # A 5xx may come after Slack stored the message: look before posting again.
            return CardPost(error=error, unknown=exc.response.status_code >= 500)
        except Exception as exc:  # a timeout or a dropped connection: it may have landed
            _failed("chat.postMessage", request, type(exc).__name__)
            return CardPost(error=type(exc).__name__, unknown=True)
        return CardPost(ts=response.get("ts"))

    def find_card(self, request: KillRequest) -> CardPost:
        """Look for the request's card among the channel's messages since it was filed."""
        cursor = None
        try:
            for _ in range(HISTORY_PAGES):
                page = self.client.conversations_history(
                    channel=request.channel_id, oldest=f"{request.created_at - 60:.6f}",
                    include_all_metadata=True, limit=200, cursor=cursor,
                )  # fmt: skip
                for message in page.get("messages") or []:
                    meta = message.get("metadata") or {}
                    payload = meta.get("event_payload") or {}
                    if (
                        meta.get("event_type") == CARD_EVENT
                        and payload.get("request") == request.id
                    ):
                        return CardPost(ts=message.get("ts"))
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not page.get("has_more") or not cursor:
                    return CardPost()
        except Exception as exc:
            _failed("conversations.history", request, _reason(exc))
        return CardPost(unknown=True)

    def update_card(self, request: KillRequest) -> bool:
        try:
            self.client.chat_update(
                channel=request.channel_id,
                ts=request.message_ts,
                text=blocks.card_text(request),
                blocks=self._blocks(request),
            )
        except Exception as exc:
            _failed("chat.update", request, _reason(exc))
            return False
        return True

    def announce(self, request: KillRequest, news: Announcement) -> bool:
        posted = True
        try:
            self.client.chat_postMessage(
                channel=request.channel_id,
                thread_ts=request.message_ts,
                text=messages.announcement(request, news),
            )
        except Exception as exc:
            _failed("chat.postMessage", request, _reason(exc))
            posted = False
        if news.what in DIRECT:
            self.direct(request, news)
        self.news(request, news)
        return posted

    def direct(self, request: KillRequest, news: Announcement) -> None:
        text = messages.direct(request, news, self._permalink(request))
        try:
            self.client.chat_postMessage(channel=request.requester_id, text=text)
        except Exception as exc:
            _failed("chat.postMessage", request, _reason(exc))
        if news.what is Happening.APPROVED:
            self.news(request, news)

    def news(self, request: KillRequest, news: Announcement) -> None:
        try:
            self.on_news(request, news)
        except Exception as exc:
            log.warning("home_update_failed request=%s error=%s", request.id, _reason(exc))

    def _permalink(self, request: KillRequest) -> str | None:
        if not request.message_ts:
            return None
        try:
            found = self.client.chat_getPermalink(
                channel=request.channel_id, message_ts=request.message_ts
            )
        except Exception as exc:
            _failed("chat.getPermalink", request, _reason(exc))
            return None
        link = str(found.get("permalink") or "")
        return link if _PERMALINK.match(link) else None

    def dm(self, user_id: str, text: str) -> None:
        """A direct message to one person (answers to App Home buttons)."""
        try:
            self.client.chat_postMessage(channel=user_id, text=text)
        except Exception as exc:
            metrics.slack_error("chat.postMessage")
            log.warning("direct_message_failed user=%s error=%s", user_id, _reason(exc))

    def link_card(self, request: KillRequest, thread_ts: str) -> None:
        """A reply under the message the request was filed from, linking to its card."""
        link = None
        try:
            found = self.client.chat_getPermalink(
                channel=request.channel_id, message_ts=request.message_ts
            )
            link = found.get("permalink")
        except Exception as exc:
            log.info("permalink_failed channel=%s error=%s", request.channel_id, _reason(exc))
        try:
            self.client.chat_postMessage(
                channel=request.channel_id,
                thread_ts=thread_ts,
                text=messages.card_link(request, link),
            )
        except Exception as exc:
            _failed("chat.postMessage", request, _reason(exc))

    def post_summary(
        self, request: KillRequest, summary: EffectSummary, chart: bytes | None
    ) -> None:
        """The chart first (files_upload_v2 into the card's thread), then the summary, which
        says so when there is no chart: the numbers never wait on an upload."""
        note = self._upload_chart(request, chart) if chart else _no_chart(summary)
        try:
            self.client.chat_postMessage(
                channel=request.channel_id,
                thread_ts=request.message_ts,
                text=messages.summary(request, summary, note),
            )
        except Exception as exc:
            _failed("chat.postMessage", request, _reason(exc))

    def _upload_chart(self, request: KillRequest, chart: bytes) -> str | None:
        """None when the chart is in the thread; else why not, in words."""
        try:
            self.client.files_upload_v2(
                channel=request.channel_id,
                thread_ts=request.message_ts,
                content=chart,
                filename=f"killtask-{request.id}.png",
                title=f"Matching sessions, request #{request.id}",
                alt_txt="Matching sessions over time while the kill task ran",
            )
        except Exception as exc:
            _failed("files.upload", request, _reason(exc))
            return (
                f"The chart could not be uploaded to Slack ({_reason(exc)}); the numbers above "
                "are complete. Check that the app has the files:write scope."
            )
        return None

    def tell(
        self, channel_id: str, user_id: str, text: str, response_url: str | None = None
    ) -> None:
        """A private reply: ephemeral in the channel, else through the command's response_url
        (which works where the bot is not a member), else a direct message."""
        try:
            self.client.chat_postEphemeral(channel=channel_id, user=user_id, text=text)
            return
        except Exception as exc:
            metrics.slack_error("chat.postEphemeral")
            log.info("ephemeral_failed channel=%s error=%s", channel_id, _reason(exc))
        if response_url and self._is_slack_hook(response_url):
            try:
                WebhookClient(response_url, timeout=5).send(
                    text=text, response_type="ephemeral", replace_original=False
                )
                return
            except Exception as exc:
                metrics.slack_error("response_url")
                log.warning("response_url_failed error=%s", type(exc).__name__)
        try:
            self.client.chat_postMessage(channel=user_id, text=text)
        except Exception as exc:
            metrics.slack_error("chat.postMessage")
            log.warning("direct_message_failed user=%s error=%s", user_id, _reason(exc))

    def _is_slack_hook(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("https", "http") and parts.hostname in self.hook_hosts


class SlackMembership:
    """User-group membership from usergroups.users.list, cached for a minute.

    When Slack cannot be asked, an answer cached less than `stale_limit` ago still counts
    (locking everyone out mid-incident helps nobody); older than that, the person counts as
    not a member, and `unanswered` tells the refusal why."""

    def __init__(  # type: ignore[no-untyped-def]
        self, client: WebClient, ttl: float = 60.0, stale_limit: float = 600.0,
        clock=time.monotonic,
    ):  # fmt: skip
        self.client = client
        self.ttl = ttl
        self.stale_limit = stale_limit
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._unanswered: set[str] = set()
        self._lock = threading.Lock()

    def groups_of(self, user_id: str, groups: frozenset[str]) -> frozenset[str]:
        return frozenset(g for g in groups if user_id in self._members(g))

    def unanswered(self, groups: frozenset[str]) -> frozenset[str]:
        """The groups Slack could not be asked about, with no recent answer to fall back on."""
        with self._lock:
            return frozenset(groups & self._unanswered)

    def _members(self, group_id: str) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(group_id)
        if cached and now - cached[0] < self.ttl:
            return cached[1]
        try:
            response = self.client.usergroups_users_list(usergroup=group_id)
            members = frozenset(response.get("users") or [])
        except Exception as exc:
            metrics.slack_error("usergroups.users.list")
            log.warning("usergroup_lookup_failed group=%s error=%s", group_id, _reason(exc))
            if cached and now - cached[0] < self.stale_limit:
                return cached[1]
            with self._lock:
                self._unanswered.add(group_id)
            return frozenset()
        with self._lock:
            self._cache[group_id] = (now, members)
            self._unanswered.discard(group_id)
        return members


def _error_code(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or exc.response.status_code)


def _reason(exc: Exception) -> str:
    return _error_code(exc) if isinstance(exc, SlackApiError) else type(exc).__name__


def _failed(method: str, request: KillRequest, error: str) -> None:
    metrics.slack_error(method)
    log.warning("slack_call_failed method=%s request=%s error=%s", method, request.id, error)


def _no_chart(summary: EffectSummary) -> str:
    if summary.kill is not None:
        return ""
    if summary.samples < 2:
        return "There is no chart: fewer than two samples were read."
    return "The chart could not be drawn; the numbers above are complete."
