"""What Slack itself sends to the bot: signed slash commands, button clicks, modal submissions,
option lookups (block_suggestion) and message shortcuts (message_action).

The ``*_payload`` functions give the raw payload dicts (Socket Mode envelopes carry these); the
``*_body`` functions give the form-encoded HTTP bodies; ``SlackSender`` signs and posts them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import urlencode

TEAM = {"id": "T0TEST", "domain": "test"}
APP_ID = "A0TEST"


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack adds to a request (signing scheme v0)."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def _trigger_id() -> str:
    return f"1700000000.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


def _user(user_id: str, user_name: str | None, team_id: str) -> dict[str, str]:
    name = user_name or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def command_payload(
    text: str,
    user_id: str = "U0REQUESTER",
    channel_id: str = "C0INCIDENT",
    command: str = "/killtask",
    trigger_id: str | None = None,
    response_url: str | None = None,
    team_id: str = "T0TEST",
    user_name: str | None = None,
    channel_name: str = "incident",
) -> dict[str, str]:
    """A slash command payload: flat strings, as Slack form-encodes it."""
    return {
        "token": "verification-token",  # deprecated by Slack, still sent
        "team_id": team_id,
        "team_domain": TEAM["domain"],
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url or f"https://hooks.slack.com/commands/{team_id}/1/x",
        "trigger_id": trigger_id or _trigger_id(),
    }


def command_body(text: str, **kw: Any) -> str:
    return urlencode(command_payload(text, **kw))


def action_payload(
    action_id: str,
    value: str,
    user_id: str = "U0REQUESTER",
    channel_id: str = "C0INCIDENT",
    message_ts: str = "1700000000.000100",
    block_id: str = "actions",
    response_url: str | None = None,
    trigger_id: str | None = None,
    team_id: str = "T0TEST",
    user_name: str | None = None,
    message_text: str = "",
    message_blocks: list[dict[str, Any]] | None = None,
    is_ephemeral: bool = False,
) -> dict[str, Any]:
    """A block_actions payload for one button click on a message."""
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, user_name, team_id),
        "api_app_id": APP_ID,
        "token": "verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": trigger_id or _trigger_id(),
        "team": {**TEAM, "id": team_id},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "incident"},
        "state": {"values": {}},
        "response_url": response_url or f"https://hooks.slack.com/actions/{team_id}/1/x",
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "type": "button",
                "text": {"type": "plain_text", "text": action_id},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    if not is_ephemeral:  # Slack leaves out the message for ephemeral ones
        payload["message"] = {
            "type": "message",
            "ts": message_ts,
            "user": "UBOT",
            "bot_id": "BBOT",
            "text": message_text,
            "blocks": message_blocks or [],
        }
    return payload


def action_body(action_id: str, value: str, **kw: Any) -> str:
    return urlencode({"payload": json.dumps(action_payload(action_id, value, **kw))})


def view_submission_payload(
    callback_id: str,
    values: dict[str, dict[str, Any]],
    user_id: str = "U0REQUESTER",
    private_metadata: str = "",
    view_id: str = "V0000001",
    trigger_id: str | None = None,
    team_id: str = "T0TEST",
    user_name: str | None = None,
) -> dict[str, Any]:
    """A view_submission payload; ``values`` is view.state.values ({block_id: {action_id: state}}).

    A plain string state is shorthand for a plain_text_input holding that value.
    """
    state = {
        block_id: {
            action_id: {"type": "plain_text_input", "value": s} if isinstance(s, str) else s
            for action_id, s in actions.items()
        }
        for block_id, actions in values.items()
    }
    return {
        "type": "view_submission",
        "team": {**TEAM, "id": team_id},
        "user": _user(user_id, user_name, team_id),
        "api_app_id": APP_ID,
        "token": "verification-token",
        "trigger_id": trigger_id or _trigger_id(),
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "title": {"type": "plain_text", "text": "killtask"},
            "blocks": [],
            "state": {"values": state},
            "hash": uuid.uuid4().hex[:12],
            "root_view_id": view_id,
            "previous_view_id": None,
            "external_id": "",
            "app_id": APP_ID,
            "bot_id": "BBOT",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_submission_body(callback_id: str, values: dict[str, dict[str, Any]], **kw: Any) -> str:
    payload = view_submission_payload(callback_id, values, **kw)
    return urlencode({"payload": json.dumps(payload)})


def block_suggestion_payload(
    action_id: str,
    block_id: str,
    value: str,
    user_id: str = "U0REQUESTER",
    private_metadata: str = "",
    view_id: str = "V0000001",
    team_id: str = "T0TEST",
    user_name: str | None = None,
) -> dict[str, Any]:
    """What Slack sends while someone types in an external_select of an open modal."""
    return {
        "type": "block_suggestion",
        "user": _user(user_id, user_name, team_id),
        "container": {"type": "view", "view_id": view_id},
        "api_app_id": APP_ID,
        "token": "verification-token",
        "action_id": action_id,
        "block_id": block_id,
        "value": value,
        "team": {**TEAM, "id": team_id},
        "enterprise": None,
        "is_enterprise_install": False,
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "callback_id": "killtask_file",
            "private_metadata": private_metadata,
            "blocks": [],
            "state": {"values": {}},
            "app_id": APP_ID,
            "bot_id": "BBOT",
        },
    }


def message_action_payload(
    callback_id: str,
    message_text: str,
    user_id: str = "U0REQUESTER",
    channel_id: str = "C0INCIDENT",
    message_ts: str | None = None,
    trigger_id: str | None = None,
    response_url: str | None = None,
    team_id: str = "T0TEST",
    user_name: str | None = None,
) -> dict[str, Any]:
    """A message shortcut ("message_action") on a message someone else posted."""
    ts = message_ts or f"{int(time.time())}.{uuid.uuid4().int % 10**6:06d}"
    return {
        "type": "message_action",
        "token": "verification-token",
        "action_ts": f"{time.time():.6f}",
        "team": {**TEAM, "id": team_id},
        "user": _user(user_id, user_name, team_id),
        "channel": {"id": channel_id, "name": "incident"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id or _trigger_id(),
        "response_url": response_url or "https://hooks.slack.com/app/T0TEST/1/x",
        "message_ts": ts,
        "message": {"type": "message", "user": "U0ALERTS", "text": message_text, "ts": ts},
    }


def home_action_payload(
    action_id: str, value: str, user_id: str = "U0REQUESTER", team_id: str = "T0TEST"
) -> dict[str, Any]:
    """A button click on the user's App Home: no channel, no message; the container is a view."""
    view_id = f"VH{user_id}"
    return {
        "type": "block_actions",
        "user": _user(user_id, None, team_id),
        "api_app_id": APP_ID,
        "token": "verification-token",
        "container": {"type": "view", "view_id": view_id},
        "trigger_id": _trigger_id(),
        "team": {**TEAM, "id": team_id},
        "enterprise": None,
        "is_enterprise_install": False,
        "view": {"id": view_id, "type": "home", "team_id": team_id, "blocks": [],
                 "state": {"values": {}}, "app_id": APP_ID, "bot_id": "BBOT"},
        "actions": [
            {
                "action_id": action_id,
                "block_id": "home",
                "value": value,
                "type": "button",
                "text": {"type": "plain_text", "text": action_id},
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }  # fmt: skip


def event_body(event: dict[str, Any], team_id: str = "T0TEST") -> str:
    """An Events API envelope (JSON), as Slack posts it to the request URL."""
    return json.dumps(
        {
            "token": "verification-token",
            "team_id": team_id,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
        }
    )


def app_home_opened(user_id: str, tab: str = "home") -> dict[str, Any]:
    return {
        "type": "app_home_opened",
        "user": user_id,
        "channel": "D0HOME",
        "tab": tab,
        "event_ts": f"{time.time():.6f}",
    }


class SlackSender:
    """Posts signed requests to the bot's /slack/events endpoint, as Slack does."""

    def __init__(
        self, base_url: str, signing_secret: str, timeout: float = 10.0, hook_url: str | None = None
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/slack/events"
        # Where the bot's response_url replies go (a stand-in's hook_url()); Slack's own
        # hooks host otherwise, which a test must never reach.
        self.hook_url = hook_url
        self.signing_secret = signing_secret
        self.timeout = timeout
        # Loopback only: never let *_proxy environment variables reroute us.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def post(
        self,
        body: str,
        headers_override: dict[str, str] | None = None,
        timestamp: int | None = None,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
    ) -> tuple[int, str, Any]:
        """POST ``body``; return (status, text, parsed JSON or None)."""
        headers = sign(self.signing_secret, body, timestamp)
        if retry_num is not None:  # Slack's redelivery after the bot was slow to answer
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
        headers |= headers_override or {}
        request = urllib.request.Request(self.url, body.encode(), headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:  # 4xx/5xx still carry a body worth asserting on
            status, text = err.code, err.read().decode()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return status, text, parsed

    def command(self, text: str, retry_num: int | None = None, **kw: Any) -> tuple[int, str, Any]:
        kw.setdefault("response_url", self.hook_url)
        return self.post(command_body(text, **kw), retry_num=retry_num)

    def click(
        self, action_id: str, value: str, retry_num: int | None = None, **kw: Any
    ) -> tuple[int, str, Any]:
        kw.setdefault("response_url", self.hook_url)
        return self.post(action_body(action_id, value, **kw), retry_num=retry_num)

    def suggest(self, action_id: str, block_id: str, value: str, **kw: Any) -> tuple[int, str, Any]:
        payload = block_suggestion_payload(action_id, block_id, value, **kw)
        return self.post(urlencode({"payload": json.dumps(payload)}))

    def shortcut(self, callback_id: str, message_text: str, **kw: Any) -> tuple[int, str, Any]:
        kw.setdefault("response_url", self.hook_url)
        payload = message_action_payload(callback_id, message_text, **kw)
        return self.post(urlencode({"payload": json.dumps(payload)}))

    def home_opened(self, user_id: str) -> tuple[int, str, Any]:
        return self.post(
            event_body(app_home_opened(user_id)),
            headers_override={"Content-Type": "application/json"},
        )

    def home_click(self, action_id: str, value: str, **kw: Any) -> tuple[int, str, Any]:
        payload = home_action_payload(action_id, value, **kw)
        return self.post(urlencode({"payload": json.dumps(payload)}))

    def submit_view(
        self,
        callback_id: str,
        values: dict[str, dict[str, Any]],
        retry_num: int | None = None,
        **kw: Any,
    ) -> tuple[int, str, Any]:
        return self.post(view_submission_body(callback_id, values, **kw), retry_num=retry_num)
