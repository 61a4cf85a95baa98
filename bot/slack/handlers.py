"""Slack handlers: ack first, parse, call the service, render. Nothing here decides anything."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor

from slack_bolt import Ack
from slack_sdk import WebClient

from bot.killtask import (
    KillTaskSpec,
    SpecError,
    build_spec,
    describe_filters,
    parse_instance_id,
    parse_product,
    parse_reason,
    split_line,
)
from bot.service import KillTaskService, Outcome
from bot.slack import blocks
from bot.slack.adapters import SlackNotifier

log = logging.getLogger(__name__)


class Handlers:
    """`work` runs everything after the ack, so Bolt's listener threads are free again at once
    and a storm of clicks waiting on DBbrain's rate limit cannot delay anyone's ack."""

    def __init__(self, service: KillTaskService, notifier: SlackNotifier, work: Executor):
        self.service = service
        self.notifier = notifier
        self.work = work

    def later(self, task: Callable[[], None]) -> None:
        def run() -> None:
            try:
                task()
            except Exception:
                log.exception("work_failed")

        self.work.submit(run)

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
        if line.verb == "list":
            ack()

            def show_list() -> None:
                found = self.service.open_requests(user_id, channel_id)
                text = found.message if isinstance(found, Outcome) else blocks.list_text(found)
                self.notifier.tell(channel_id, user_id, text, response_url)

            self.later(show_list)
            return
        if line.verb == "stop":
            try:
                instance_id, product, reason = _stop_args(line.fields)
            except SpecError as error:
                _reply(ack, blocks.spec_error_text(error))
                return
            ack()
            self.later(
                lambda: self._answer(
                    self.service.stop_instance(user_id, channel_id, instance_id, product, reason),
                    channel_id, user_id, response_url, always=True,
                )
            )  # fmt: skip
            return
        fields = line.fields
        if line.verb == "preview":  # a preview kills nothing, so it needs no duration
            fields = {"duration": "until-stopped", **fields}
        try:
            spec = build_spec(fields, self._protected)
        except SpecError as error:
            _reply(ack, blocks.spec_error_text(error))
            return
        if line.verb == "preview":
            ack()
            self.later(lambda: self._show_preview(user_id, channel_id, spec, response_url))
            return
        unknown_flags = line.flags - {"break-glass"}
        if unknown_flags:
            flag = sorted(unknown_flags)[0]
            _reply(ack, f"Unknown option `--{flag}`; the only option is `--break-glass`.")
            return
        ack()
        trigger = body.get("trigger_id")
        self.later(
            lambda: self._answer(
                self.service.file(
                    user_id, channel_id, spec, break_glass="break-glass" in line.flags,
                    source_key=f"cmd:{trigger}" if trigger else None,
                ),
                channel_id, user_id, response_url, always=True,
            )
        )  # fmt: skip

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
        ack()
        view_id = view.get("id") or ""
        self.later(
            lambda: self._answer(
                self.service.file(user_id, channel_id, spec, source_key=f"view:{view_id}"),
                channel_id, user_id, None, always=True,
            )
        )  # fmt: skip

    # ------------------------------------------------------------ buttons

    def button(self, ack: Ack, body: dict, action: dict) -> None:
        ack()
        user_id = body["user"]["id"]
        channel_id = (body.get("channel") or {}).get("id") or ""
        message_ts = (body.get("container") or {}).get("message_ts")
        try:
            request_id = int(str(action.get("value", "")))
        except ValueError:
            request_id = -1
        verb = action["action_id"]
        use_case = {
            "approve": self.service.approve,
            "reject": self.service.reject,
            "stop": self.service.stop,
            "refresh_preview": self.service.refresh_preview,
        }[verb]
        # The card and its thread show successes; the clicker hears only about problems.
        self.later(
            lambda: self._answer(
                use_case(user_id, request_id, channel_id, message_ts),
                channel_id, user_id, body.get("response_url"), always=False,
            )
        )  # fmt: skip

    def _show_preview(
        self, user_id: str, channel_id: str, spec: KillTaskSpec, response_url: str | None
    ) -> None:
        outcome = self.service.preview(user_id, channel_id, spec)
        if outcome.preview is None:
            text = outcome.message
        else:
            text = (
                f"Preview for `{spec.instance_id}`, {describe_filters(spec)} "
                "(nothing was filed):\n" + blocks.preview_text(outcome.preview)
            )
        self.notifier.tell(channel_id, user_id, text, response_url)

    def _answer(
        self, outcome: Outcome, channel_id: str, user_id: str, response_url: str | None,
        always: bool,
    ) -> None:  # fmt: skip
        if always or not outcome.ok:
            self.notifier.tell(channel_id, user_id, outcome.message, response_url)


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
