"""Picking an instance: the form's live instance list (block_suggestion) and the message
shortcut that opens the form from an alert, with the instance the alert names."""

from __future__ import annotations

import logging

from slack_bolt import Ack
from slack_sdk import WebClient

from bot import metrics
from bot.background import Background
from bot.estate import InstanceInfo, instance_ids_in
from bot.service import KillTaskService
from bot.slack import modal
from bot.slack.adapters import SlackNotifier
from bot.slack.blocks import text_object
from bot.store import StoreError

log = logging.getLogger(__name__)

SHORTCUT_CALLBACK = "killtask_from_message"


def instance_option(info: InstanceInfo) -> dict:
    """name · ID · region · health, at most 75 characters (Slack's limit); the value is the ID."""
    health = "?" if info.health_score is None else str(info.health_score)
    tail = f" · {info.instance_id} · {info.region} · health {health}"
    room = max(75 - len(tail), 0)
    name = info.name if len(info.name) <= room else info.name[: max(room - 1, 0)] + "…"
    label = (f"{name}{tail}" if name else tail[3:])[:75]
    return {"text": text_object("plain_text", label), "value": info.instance_id}


class Picking:
    def __init__(self, service: KillTaskService, notifier: SlackNotifier, background: Background):
        self.service = service
        self.notifier = notifier
        self.background = background  # the form opens after the ack, not before it

    def instance_options(self, ack: Ack, body: dict) -> None:
        """Answered from the cached list, so well inside Slack's 3 s."""
        ack = metrics.timed_ack(ack)
        user_id = (body.get("user") or {}).get("id") or ""
        metadata = (body.get("view") or {}).get("private_metadata", "")
        channel_id = modal.modal_channel(metadata) or ""
        typed = str(body.get("value") or "")[:100]
        try:
            found = self.service.instance_options(user_id, channel_id, typed)
        except StoreError:
            found = []
        ack(options=[instance_option(info) for info in found])

    def from_message(self, ack: Ack, body: dict, client: WebClient) -> None:
        """ "Kill sessions…" on a message: the form, filled in with the instance it names."""
        ack()
        user_id = (body.get("user") or {}).get("id") or ""
        channel_id = (body.get("channel") or {}).get("id") or ""
        message = body.get("message") or {}
        found = instance_ids_in(str(message.get("text") or ""))
        thread_ts = message.get("thread_ts") or message.get("ts") or body.get("message_ts")
        view = modal.modal(channel_id, found[0] if found else None, thread_ts)
        trigger_id, response_url = body["trigger_id"], body.get("response_url")

        def not_opened(exc: BaseException) -> None:
            log.warning("views_open_failed error=%s", type(exc).__name__)
            self.notifier.tell(
                channel_id, user_id,
                "Slack did not open the form just now; try the shortcut again in a moment.",
                response_url,
            )  # fmt: skip

        def opening() -> None:
            try:
                client.views_open(trigger_id=trigger_id, view=view)
            except Exception as exc:
                not_opened(exc)

        if not self.background.submit(opening, not_opened, "modal", lane="slack"):
            not_opened(RuntimeError("the bot is busy"))
