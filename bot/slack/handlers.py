"""Slack handlers: ack first, parse, call the service, render. Nothing here decides anything."""

from __future__ import annotations

import logging

from slack_bolt import Ack
from slack_sdk import WebClient

from bot.killtask import (
    SpecError,
    build_spec,
    parse_instance_id,
    parse_product,
    parse_reason,
    split_line,
)
from bot.service import KillTaskService
from bot.slack import blocks
from bot.slack.adapters import SlackNotifier
from bot.slack.jobs import Click, File, Job, ListOpen, ShowPreview, StopInstance, encode
from bot.work import WorkChannel

log = logging.getLogger(__name__)


UNAVAILABLE = (
    "The bot could not take this just now: its work process is not answering (restarting, or "
    "overloaded), so nothing was done. Try again in a few seconds; if it keeps happening, check "
    "the bot's log."
)


class Handlers:
    """Each request is checked and acked, and its job handed to the work process: the slow part
    (Slack, DBbrain, the database) runs there. A job the work process cannot take is never
    silent: the person hears at once that nothing was done."""

    def __init__(self, service: KillTaskService, notifier: SlackNotifier, channel: WorkChannel):
        self.service = service
        self.notifier = notifier
        self.channel = channel

    def _hand_over(self, job: Job) -> bool:
        return self.channel.submit(encode(job))

    def _hand_over_or_tell(self, job: Job) -> None:
        """After the ack, without waiting: the job is queued for the work process, and if it
        cannot be handed over the person is told so."""
        self.channel.post(
            encode(job),
            lambda: self.notifier.tell(job.channel_id, job.user_id, UNAVAILABLE, job.response_url),
        )

    @property
    def _protected(self) -> frozenset[str]:
        return self.service.policy.protected_users

    # ------------------------------------------------------------ /killtask

    def command(self, ack: Ack, body: dict, client: WebClient) -> None:
        user_id, channel_id = body["user_id"], body["channel_id"]
        response_url = body.get("response_url")
        try:
            line = split_line(body.get("text") or "")
        except SpecError as error:
            _reply(ack, blocks.spec_error_text(error))
            return
        if line.verb == "help":
            _reply(ack, blocks.help_text())
            return
        if line.verb == "modal":
            ack()
            client.views_open(trigger_id=body["trigger_id"], view=blocks.modal(channel_id))
            return
        job: Job
        if line.verb == "list":
            job = ListOpen(user_id, channel_id, response_url)
        elif line.verb == "stop":
            try:
                instance_id, product, reason = _stop_args(line.fields)
            except SpecError as error:
                _reply(ack, blocks.spec_error_text(error))
                return
            job = StopInstance(user_id, channel_id, instance_id, product, reason, response_url)
        else:
            fields = line.fields
            if line.verb == "preview":  # a preview kills nothing, so it needs no duration
                fields = {"duration": "until-stopped", **fields}
            try:
                spec = build_spec(fields, self._protected)
            except SpecError as error:
                _reply(ack, blocks.spec_error_text(error))
                return
            unknown_flags = line.flags - {"break-glass"}
            if line.verb == "preview":
                job = ShowPreview(user_id, channel_id, spec, response_url)
            elif unknown_flags:
                flag = sorted(unknown_flags)[0]
                _reply(ack, f"Unknown option `--{flag}`; the only option is `--break-glass`.")
                return
            else:
                trigger = body.get("trigger_id")
                job = File(
                    user_id, channel_id, spec, break_glass="break-glass" in line.flags,
                    source_key=f"cmd:{trigger}" if trigger else None, response_url=response_url,
                )  # fmt: skip
        ack()
        self._hand_over_or_tell(job)

    # ------------------------------------------------------------ the modal

    def modal_submitted(self, ack: Ack, body: dict, view: dict) -> None:
        user_id = body["user"]["id"]
        channel_id = blocks.modal_channel(view.get("private_metadata", ""))
        if not channel_id:
            ack(response_action="errors", errors={"instance_id": "Open the form from a channel."})
            return
        fields = blocks.modal_fields(view.get("state", {}).get("values", {}))
        try:
            spec = build_spec(fields, self._protected)
        except SpecError as error:
            ack(response_action="errors", errors=_field_errors(error.errors))
            return
        # The policy is checked before closing the form, so a refusal lands on its field.
        decision = self.service.precheck(user_id, channel_id, spec)
        if not decision.allowed and decision.field:
            ack(response_action="errors", errors={decision.field: decision.reason[:150]})
            return
        view_id = view.get("id") or ""
        if self._hand_over(File(user_id, channel_id, spec, source_key=f"view:{view_id}")):
            ack()
        else:  # the form stays open with what they typed, so they can simply submit again
            ack(response_action="errors", errors={"instance_id": UNAVAILABLE[:150]})

    # ------------------------------------------------------------ buttons

    def button(self, ack: Ack, body: dict, action: dict) -> None:
        # A click's ack cannot carry text, so everything but the ack happens after it.
        user_id = body["user"]["id"]
        channel_id = (body.get("channel") or {}).get("id") or ""
        message_ts = (body.get("container") or {}).get("message_ts")
        try:
            request_id = int(str(action.get("value", "")))
        except ValueError:
            request_id = -1
        response_url = body.get("response_url")
        ack()
        self._hand_over_or_tell(
            Click(action["action_id"], user_id, channel_id, request_id, message_ts, response_url)
        )


def _reply(ack: Ack, text: str) -> None:
    """Answer a slash command in the ack itself: instant, and only the caller sees it."""
    ack(response_type="ephemeral", text=text)


def _stop_args(fields: dict[str, str]) -> tuple[str, str, str | None]:
    errors: dict[str, str] = {}
    allowed = {"instance_id", "product", "reason"}
    for key in fields:
        if key not in allowed:
            errors[key] = "does not apply to stop; use `/killtask stop <InstanceId> [product=…]`"
    values: dict[str, object] = {}
    for key, parse in (
        ("instance_id", parse_instance_id),
        ("product", parse_product),
        ("reason", parse_reason),
    ):
        try:
            values[key] = parse(fields.get(key))
        except ValueError as exc:
            errors[key] = str(exc)
    if errors:
        raise SpecError(errors)
    return values["instance_id"], values["product"], values["reason"]  # type: ignore[return-value]


def _field_errors(errors: dict[str, str]) -> dict[str, str]:
    """Slack shows modal errors under their block; the text must stay short."""
    return {field: problem[:150] for field, problem in errors.items()}
