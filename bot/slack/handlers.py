"""Slack handlers: parse, store what must survive, ack, then the slow rest after the ack.

Nothing here decides anything. A filing or a decision is stored before the ack (the service's
quick part), so a process that dies after the ack loses nothing a person was told about: the
clock finishes it. The slow part runs on the in-process pool, and any exception there ends in
a message to the person saying what was not done.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from slack_bolt import Ack
from slack_sdk import WebClient

from bot import metrics
from bot.background import Background
from bot.killtask import (
    CommandLine,
    SpecError,
    build_spec,
    describe_filters,
    parse_instance_id,
    parse_product,
    parse_reason,
    split_line,
)
from bot.outcomes import Outcome
from bot.requests import State
from bot.service import KillTaskService
from bot.slack import messages, modal
from bot.slack.adapters import SlackNotifier
from bot.slack.later import AfterAck
from bot.store import StoreError

log = logging.getLogger(__name__)

_REQUEST_NUMBER = re.compile(r"[0-9]{1,9}")
# Which pool runs each kind of slow part: Slack posts never wait behind DBbrain reads, and
# starts and stops wait behind neither (see bot.background).
LANES = {
    "list": "slack", "file": "slack", "reject": "slack", "approve": "slack",
    "preview": "reads", "refresh_preview": "reads",
    "stop": "urgent", "stop_instance": "urgent",
}  # fmt: skip


class Handlers:
    def __init__(self, service: KillTaskService, notifier: SlackNotifier, background: Background):
        self.service = service
        self.notifier = notifier
        self.background = background
        self.after_ack = AfterAck(background)

    # ------------------------------------------------------------ after the ack

    def _later(
        self, kind: str, job: Callable[[], Outcome | None], tell: Callable[[str], None],
        request_id: int | None = None, always: bool = False, lane: str | None = None,
    ) -> None:  # fmt: skip
        """Run the slow part; the person hears of any problem (or of everything, `always`)."""
        self.after_ack.run(kind, job, tell, request_id, lane or LANES[kind], always)

    def _teller(self, body: dict, channel_id: str, user_id: str) -> Callable[[str], None]:
        response_url = body.get("response_url")
        return lambda text: self.notifier.tell(channel_id, user_id, text, response_url)

    # ------------------------------------------------------------ /killtask

    def command(self, ack: Ack, body: dict, client: WebClient) -> None:
        ack = metrics.timed_ack(ack)
        user_id, channel_id = body["user_id"], body["channel_id"]
        text = body.get("text") or ""
        if len(text) > messages.MAX_TEXT:
            _reply(ack, messages.too_long(len(text)))
            return
        try:
            line = split_line(text)
        except SpecError as error:
            _reply(ack, messages.spec_error(error))
            return
        tell = self._teller(body, channel_id, user_id)
        if line.verb == "help":
            _reply(ack, messages.help_text())
        elif line.verb == "modal":
            ack()
            trigger_id = body["trigger_id"]
            opening = lambda: self._open_modal(client, trigger_id, channel_id, tell)  # noqa: E731
            self._later("modal", opening, tell, lane="slack")
        elif line.verb == "list":
            ack()
            self._later("list", lambda: self._list(user_id, channel_id, tell), tell)
        elif line.verb == "stop":
            self._stop_instance(ack, line.fields, user_id, channel_id, tell)
        else:
            self._file_or_preview(ack, body, line, user_id, channel_id, tell)

    def _open_modal(
        self, client: WebClient, trigger_id: str, channel_id: str, tell: Callable[[str], None]
    ) -> None:
        try:
            client.views_open(trigger_id=trigger_id, view=modal.modal(channel_id))
        except Exception as exc:
            log.warning("views_open_failed error=%s", type(exc).__name__)
            tell("Slack did not open the form just now; type `/killtask` again in a moment.")

    def _list(self, user_id: str, channel_id: str, tell: Callable[[str], None]) -> None:
        found = self.service.open_requests(user_id, channel_id)
        tell(messages.outcome(found) if isinstance(found, Outcome) else messages.list_text(found))

    def _stop_instance(
        self, ack: Ack, fields: dict[str, str], user_id: str, channel_id: str,
        tell: Callable[[str], None],
    ) -> None:  # fmt: skip
        try:
            instance_id, product, reason = _stop_args(fields)
        except SpecError as error:
            _reply(ack, messages.spec_error(error))
            return
        ack()
        self._later(
            "stop_instance",
            lambda: self.service.stop_instance(user_id, channel_id, instance_id, product, reason),
            tell, always=True,
        )  # fmt: skip

    def _file_or_preview(
        self, ack: Ack, body: dict, line: CommandLine, user_id: str, channel_id: str,
        tell: Callable[[str], None],
    ) -> None:  # fmt: skip
        fields = line.fields
        if line.verb == "preview":  # a preview kills nothing, so it needs no duration
            fields = {"duration": "until-stopped", **fields}
        try:
            spec = build_spec(fields, self.service.policy.protected_users)
        except SpecError as error:
            _reply(ack, messages.spec_error(error))
            return
        if line.verb == "preview":
            ack()

            def preview() -> None:
                result = self.service.preview(user_id, channel_id, spec)
                tell(messages.preview_reply(spec.instance_id, describe_filters(spec), result))

            self._later("preview", preview, tell)
            return
        unknown_flags = line.flags - {"break-glass"}
        if unknown_flags:
            _reply(ack, messages.unknown_option(sorted(unknown_flags)[0]))
            return
        trigger = body.get("trigger_id")
        try:
            filed = self.service.file(
                user_id, channel_id, spec, break_glass="break-glass" in line.flags,
                source_key=f"cmd:{trigger}" if trigger else None,
            )  # fmt: skip
        except StoreError:
            _reply(ack, messages.store_down("your request was not filed"))
            return
        _reply(ack, messages.outcome(filed))
        if filed.ok and filed.request is not None:
            self._publish_later(filed, tell)

    def _publish_later(
        self, filed: Outcome, tell: Callable[[str], None], thread_ts: str | None = None
    ) -> None:
        """Post the card; filed from a message (shortcut), link it in that message's thread."""
        request = filed.request
        assert request is not None

        def publish() -> None:
            done = self.service.publish(request)
            problem = messages.card_problem(done.request, done.card)
            if problem:
                tell(problem)
            elif thread_ts and done.request.message_ts:
                self.notifier.link_card(done.request, thread_ts)
            starts = done.request.state is State.APPROVED  # break-glass
            self._later(
                "file", lambda: self.service.follow_filing(done.request), tell, request.id,
                lane="urgent" if starts else "reads",
            )  # fmt: skip

        self._later("file", publish, tell, request.id)

    # ------------------------------------------------------------ the modal

    def modal_submitted(self, ack: Ack, body: dict, view: dict) -> None:
        ack = metrics.timed_ack(ack)
        user_id = body["user"]["id"]
        channel_id = modal.modal_channel(view.get("private_metadata", ""))
        if not channel_id:
            ack(response_action="errors", errors={"instance_id": "Open the form from a channel."})
            return
        fields = modal.modal_fields(view.get("state", {}).get("values", {}))
        try:
            spec = build_spec(fields, self.service.policy.protected_users)
        except SpecError as error:
            ack(response_action="errors", errors=_field_errors(error.errors))
            return
        try:
            filed = self.service.file(
                user_id, channel_id, spec, source_key=f"view:{view.get('id')}"
            )
        except StoreError:
            ack(
                response_action="errors",
                errors={"instance_id": messages.store_down("nothing was filed")[:150]},
            )
            return
        if not filed.ok and filed.field:  # the refusal lands on its field; the form stays open
            ack(response_action="errors", errors={filed.field: filed.message[:150]})
            return
        ack()
        tell = self._teller(body, channel_id, user_id)
        self.after_ack.say(tell, messages.outcome(filed))
        if filed.ok and filed.request is not None:
            thread_ts = modal.modal_thread(view.get("private_metadata", ""))
            self._publish_later(filed, tell, thread_ts)

    # ------------------------------------------------------------ buttons

    def button(self, ack: Ack, body: dict, action: dict) -> None:
        ack = metrics.timed_ack(ack)
        verb = action["action_id"]
        user_id = body["user"]["id"]
        channel_id = (body.get("channel") or {}).get("id") or ""
        message_ts = (body.get("container") or {}).get("message_ts")
        value = str(action.get("value", ""))
        tell = self._teller(body, channel_id, user_id)
        if not _REQUEST_NUMBER.fullmatch(value):
            ack()
            self.after_ack.say(tell, messages.NOT_THIS_CHANNELS)
            return
        if not isinstance(message_ts, str) or not message_ts:
            ack()  # a real click always names the message its button is on
            self.after_ack.say(tell, messages.NOT_FROM_A_CARD)
            return
        request_id = int(value)
        if verb in ("approve", "reject"):
            self._decide(ack, verb, user_id, request_id, channel_id, message_ts, tell)
            return
        ack()
        use_case = self.service.stop if verb == "stop" else self.service.refresh_preview
        self._later(
            verb, lambda: use_case(user_id, request_id, channel_id, message_ts), tell, request_id
        )

    def _decide(
        self, ack: Ack, verb: str, user_id: str, request_id: int, channel_id: str,
        message_ts: str, tell: Callable[[str], None],
    ) -> None:  # fmt: skip
        """Approve or reject: the decision is stored before the ack; the rest comes after."""
        use_case = self.service.approve if verb == "approve" else self.service.reject
        try:
            decided = use_case(user_id, request_id, channel_id, message_ts)
        except StoreError:
            ack()
            what = "your approval was not recorded" if verb == "approve" else "nothing was rejected"
            self.after_ack.say(tell, messages.store_down(what))
            return
        ack()
        if not decided.ok:
            self.after_ack.say(tell, messages.outcome(decided))
            return
        starts = decided.request is not None and decided.request.state is State.APPROVED
        self._later(
            verb, lambda: self.service.carry_out(decided, user_id), tell, request_id,
            lane="urgent" if starts else "slack",
        )  # fmt: skip


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
