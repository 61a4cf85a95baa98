"""The Slack side of the service's ports: showing cards and replies, and reading user groups."""

from __future__ import annotations

import logging
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from bot.requests import KillRequest
from bot.slack import blocks

log = logging.getLogger(__name__)


class SlackNotifier:
    """Posts and updates request cards. Slack failures are logged, never raised: the decision
    is already stored, and the card catches up on the next tick."""

    def __init__(self, client: WebClient, approvals_required: int = 1):
        self.client = client
        self.approvals_required = approvals_required

    def post_card(self, request: KillRequest) -> str | None:
        try:
            response = self.client.chat_postMessage(
                channel=request.channel_id,
                text=blocks.card_text(request),
                blocks=blocks.card(request, self.approvals_required),
            )
        except SlackClientError as exc:
            log.warning("card_post_failed request=%s error=%s", request.id, _why(exc))
            return None
        return response.get("ts")

    def update_card(self, request: KillRequest) -> bool:
        try:
            self.client.chat_update(
                channel=request.channel_id,
                ts=request.message_ts,
                text=blocks.card_text(request),
                blocks=blocks.card(request, self.approvals_required),
            )
        except SlackClientError as exc:
            log.warning("card_update_failed request=%s error=%s", request.id, _why(exc))
            return False
        return True

    def thread_reply(self, request: KillRequest, text: str) -> None:
        try:
            self.client.chat_postMessage(
                channel=request.channel_id, thread_ts=request.message_ts, text=text
            )
        except SlackClientError as exc:
            log.warning("thread_reply_failed request=%s error=%s", request.id, _why(exc))

    def tell(
        self, channel_id: str, user_id: str, text: str, response_url: str | None = None
    ) -> None:
        """An ephemeral reply; through response_url when the bot cannot post in the channel."""
        try:
            self.client.chat_postEphemeral(channel=channel_id, user=user_id, text=text)
            return
        except SlackClientError as exc:
            log.info("ephemeral_failed channel=%s error=%s", channel_id, _why(exc))
        if response_url:
            try:
                WebhookClient(response_url, timeout=5).send(
                    text=text, response_type="ephemeral", replace_original=False
                )
            except Exception as exc:
                log.warning("response_url_failed error=%s", type(exc).__name__)


class SlackMembership:
    """User-group membership from usergroups.users.list, cached briefly. A lookup that fails
    counts as 'not a member': the policy denies by default."""

    def __init__(self, client: WebClient, ttl: float = 60.0, clock=time.monotonic):  # type: ignore[no-untyped-def]
        self.client = client
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def groups_of(self, user_id: str, groups: frozenset[str]) -> frozenset[str]:
        return frozenset(g for g in groups if user_id in self._members(g))

    def _members(self, group_id: str) -> frozenset[str]:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(group_id)
        if cached and now - cached[0] < self.ttl:
            return cached[1]
        try:
            response = self.client.usergroups_users_list(usergroup=group_id)
            members = frozenset(response.get("users") or [])
        except SlackClientError as exc:
            log.warning("usergroup_lookup_failed group=%s error=%s", group_id, _why(exc))
            if cached:
                return cached[1]  # a stale answer beats locking everyone out mid-incident
            return frozenset()  # not cached: the next click asks Slack again
        with self._lock:
            self._cache[group_id] = (now, members)
        return members


def _why(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__
