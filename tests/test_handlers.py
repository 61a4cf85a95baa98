"""The listeners' half of the hand-over: a request is checked and acked and its job handed to the
work process; when the work process cannot take it, the person hears at once that nothing was
done (a form stays open and says so)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.policy import Decision
from bot.slack.blocks import DURATION_CHOICES
from bot.slack.handlers import UNAVAILABLE, Handlers
from bot.slack.jobs import Click, File, ListOpen, ShowPreview, StopInstance, decode


class Channel:
    def __init__(self, takes: bool):
        self.takes = takes
        self.jobs: list = []

    def submit(self, frame: bytes) -> bool:
        if self.takes:
            self.jobs.append(decode(frame))
        return self.takes

    def post(self, frame: bytes, on_failure) -> None:  # type: ignore[no-untyped-def]
        if not self.submit(frame):
            on_failure()


class Ack:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.calls.append(kwargs)


class Notifier:
    def __init__(self) -> None:
        self.told: list[tuple[str, str, str, str | None]] = []

    def tell(self, channel_id: str, user_id: str, text: str, response_url=None) -> None:  # type: ignore[no-untyped-def]
        self.told.append((channel_id, user_id, text, response_url))


def handlers(takes: bool) -> tuple[Handlers, Channel, Notifier]:
    service = SimpleNamespace(
        policy=SimpleNamespace(protected_users=frozenset()),
        precheck=lambda *args: Decision(True, "ok"),
    )
    channel, notifier = Channel(takes), Notifier()
    return Handlers(service, notifier, channel), channel, notifier  # type: ignore[arg-type]


def command_body(text: str) -> dict:
    return {
        "user_id": "U1",
        "channel_id": "C1",
        "text": text,
        "trigger_id": "1.2",
        "response_url": "http://127.0.0.1:9/hook",
    }


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("cdb-12345678 duration=10m user=app", File),
        ("list", ListOpen),
        ("stop cdb-12345678", StopInstance),
        ("preview cdb-12345678 user=app", ShowPreview),
    ],
)
def test_a_command_is_acked_and_its_job_handed_over(text: str, kind: type) -> None:
    handler, channel, _ = handlers(takes=True)
    ack = Ack()
    handler.command(ack, command_body(text), client=None)  # type: ignore[arg-type]
    assert ack.calls == [{}]
    [job] = channel.jobs
    assert isinstance(job, kind) and job.user_id == "U1" and job.channel_id == "C1"


def test_the_filed_job_carries_what_was_typed() -> None:
    handler, channel, _ = handlers(takes=True)
    handler.command(
        Ack(), command_body("cdb-12345678 duration=10m user=app reason=storm --break-glass"), None
    )  # type: ignore[arg-type]
    [job] = channel.jobs
    assert job.spec.user == "app" and job.spec.duration == 600 and job.break_glass
    assert job.source_key == "cmd:1.2"


def test_a_command_the_work_process_cannot_take_is_explained_at_once() -> None:
    handler, _, notifier = handlers(takes=False)
    ack = Ack()
    handler.command(ack, command_body("cdb-12345678 duration=10m user=app"), None)  # type: ignore[arg-type]
    assert ack.calls == [{}]
    assert notifier.told == [("C1", "U1", UNAVAILABLE, "http://127.0.0.1:9/hook")]
    assert "nothing was done" in UNAVAILABLE and "Try again" in UNAVAILABLE


def test_a_command_with_a_mistake_is_answered_in_the_ack_and_hands_nothing_over() -> None:
    handler, channel, notifier = handlers(takes=True)
    ack = Ack()
    handler.command(ack, command_body("cdb-12345678 duration=soon user=app"), None)  # type: ignore[arg-type]
    [call] = ack.calls
    assert call["response_type"] == "ephemeral" and "duration" in call["text"]
    assert channel.jobs == [] and notifier.told == []


def test_a_click_the_work_process_cannot_take_is_acked_and_explained() -> None:
    handler, _, notifier = handlers(takes=False)
    ack = Ack()
    body = {
        "user": {"id": "U2"},
        "channel": {"id": "C1"},
        "container": {"message_ts": "1.1"},
        "response_url": "http://127.0.0.1:9/hook",
    }
    handler.button(ack, body, {"action_id": "approve", "value": "7"})
    assert ack.calls == [{}]  # a click's ack cannot carry text; the reply follows at once
    assert notifier.told == [("C1", "U2", UNAVAILABLE, "http://127.0.0.1:9/hook")]


def test_a_click_handed_over_names_the_request_and_card() -> None:
    handler, channel, notifier = handlers(takes=True)
    body = {"user": {"id": "U2"}, "channel": {"id": "C1"}, "container": {"message_ts": "1.1"}}
    handler.button(Ack(), body, {"action_id": "stop", "value": "7"})
    assert channel.jobs == [Click("stop", "U2", "C1", 7, "1.1", None)]
    assert notifier.told == []


def test_a_form_the_work_process_cannot_take_stays_open_with_the_reason() -> None:
    handler, _, _ = handlers(takes=False)
    ack = Ack()
    duration = DURATION_CHOICES[0][0]
    values = {
        "instance_id": {"value": {"type": "plain_text_input", "value": "cdb-12345678"}},
        "duration": {"value": {"type": "static_select", "selected_option": {"value": duration}}},
        "user": {"value": {"type": "plain_text_input", "value": "app"}},
    }
    view = {"id": "V1", "private_metadata": '{"channel_id": "C1"}', "state": {"values": values}}
    handler.modal_submitted(ack, {"user": {"id": "U1"}}, view)
    assert ack.calls == [
        {"response_action": "errors", "errors": {"instance_id": UNAVAILABLE[:150]}}
    ]


def test_a_form_handed_over_closes() -> None:
    handler, channel, _ = handlers(takes=True)
    ack = Ack()
    values = {
        "instance_id": {"value": {"type": "plain_text_input", "value": "cdb-12345678"}},
        "duration": {"value": {"type": "static_select", "selected_option": {"value": "600"}}},
        "user": {"value": {"type": "plain_text_input", "value": "app"}},
    }
    view = {"id": "V1", "private_metadata": '{"channel_id": "C1"}', "state": {"values": values}}
    handler.modal_submitted(ack, {"user": {"id": "U1"}}, view)
    assert ack.calls == [{}]
    [job] = channel.jobs
    assert job.source_key == "view:V1" and job.spec.instance_id == "cdb-12345678"
