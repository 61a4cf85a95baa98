"""The handlers: what is stored before the ack, what the ack says, and that every failure after
the ack ends in words to the person. The service is a hand-written fake; the pool runs jobs at
once so each test reads top to bottom."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from bot.killtask import KillTaskSpec
from bot.outcomes import CardPost, Outcome, Published
from bot.requests import KillRequest, State
from bot.slack import messages
from bot.slack.handlers import Handlers
from bot.slack.later import BUSY
from bot.store import StoreError


def request(state: State = State.PENDING) -> KillRequest:
    spec = KillTaskSpec(instance_id="cdb-12345678", duration=600, user="app")
    return KillRequest(7, "C1", "U1", spec, state, 0.0, 60.0, message_ts="1.2")


@dataclass
class Service:
    """Records what was asked, in order; `fail` names a use case that raises."""

    calls: list[str] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)
    policy: object = field(default_factory=lambda: SimpleNamespace(protected_users=frozenset()))

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail[name]

    def file(self, *args, **kwargs) -> Outcome:  # type: ignore[no-untyped-def]
        self._call("file")
        return Outcome(True, "Request #7 is filed.", request())

    def publish(self, filed: KillRequest) -> Published:
        self._call("publish")
        return Published(filed, CardPost(error="not_in_channel"))

    def follow_filing(self, filed: KillRequest) -> None:
        self._call("follow_filing")

    def approve(self, *args) -> Outcome:  # type: ignore[no-untyped-def]
        self._call("approve")
        return Outcome(True, "recorded", request(State.APPROVED))

    def carry_out(self, decided: Outcome, actor: str) -> Outcome | None:
        self._call("carry_out")
        return Outcome(False, "Failed: DBbrain said <!channel>")

    def stop(self, *args) -> Outcome:  # type: ignore[no-untyped-def]
        self._call("stop")
        return Outcome(True, "stopped")


class Background:
    def __init__(self, full: bool = False) -> None:
        self.full = full
        self.lanes: list[tuple[str, str]] = []

    def submit(self, job, on_failure, name: str, lane: str = "slack") -> bool:  # type: ignore[no-untyped-def]
        if self.full:
            return False
        self.lanes.append((name, lane))
        try:
            job()
        except Exception as exc:
            on_failure(exc)
        return True


class Notifier:
    def __init__(self) -> None:
        self.told: list[str] = []

    def tell(self, channel_id: str, user_id: str, text: str, response_url=None) -> None:  # type: ignore[no-untyped-def]
        self.told.append(text)


class Ack:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.calls: list[dict] = []

    def __call__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.calls.append(kwargs)
        self.service.calls.append("ack")


def setup(full: bool = False, **fail: Exception) -> tuple[Handlers, Service, Notifier, Ack]:
    service, notifier = Service(fail=fail), Notifier()
    handlers = Handlers(service, notifier, Background(full))  # type: ignore[arg-type]
    return handlers, service, notifier, Ack(service)


def command(text: str) -> dict:
    return {"user_id": "U1", "channel_id": "C1", "text": text, "trigger_id": "1.2"}


def click(action_id: str, value: str = "7", message_ts: str | None = "1.2") -> tuple[dict, dict]:
    body = {"user": {"id": "U2"}, "channel": {"id": "C1"}}
    if message_ts is not None:
        body["container"] = {"message_ts": message_ts}
    return body, {"action_id": action_id, "value": value}


def test_a_filing_is_stored_before_the_ack_and_its_card_comes_after() -> None:
    handlers, service, notifier, ack = setup()
    handlers.command(ack, command("cdb-12345678 duration=10m user=app"), client=None)  # type: ignore[arg-type]
    assert service.calls == ["file", "ack", "publish", "follow_filing"]
    assert ack.calls == [{"response_type": "ephemeral", "text": "Request #7 is filed."}]
    # the card is posted on the Slack lane; the preview is read on the reads lane
    assert handlers.background.lanes == [("file", "slack"), ("file", "reads")]
    # the card could not be posted: the requester learns what to fix
    assert "/invite @killtask" in notifier.told[0]


def test_a_database_outage_before_the_ack_is_said_in_the_ack() -> None:
    handlers, service, _, ack = setup(file=StoreError("the database did not answer (x)"))
    handlers.command(ack, command("cdb-12345678 duration=10m user=app"), client=None)  # type: ignore[arg-type]
    assert service.calls == ["file", "ack"]
    assert "database did not answer" in ack.calls[0]["text"]
    assert "was not filed" in ack.calls[0]["text"]


def test_a_failure_after_the_ack_is_told_with_what_was_not_done() -> None:
    handlers, service, notifier, ack = setup(publish=TimeoutError())
    handlers.command(ack, command("cdb-12345678 duration=10m user=app"), client=None)  # type: ignore[arg-type]
    assert service.calls == ["file", "ack", "publish"]
    assert notifier.told == [
        messages.after_ack_failed(
            "file", 7, "an unexpected TimeoutError; the bot's log has the details"
        )
    ]
    assert "filed and kept safe" in notifier.told[0]


def test_a_full_pool_says_busy_at_once() -> None:
    handlers, service, notifier, ack = setup(full=True)
    body, action = click("stop")
    handlers.button(ack, body, action)
    assert notifier.told == [BUSY]
    assert "stop" not in service.calls


def test_an_approval_is_decided_before_the_ack_and_carried_out_after() -> None:
    handlers, service, notifier, ack = setup()
    body, action = click("approve")
    handlers.button(ack, body, action)
    assert service.calls == ["approve", "ack", "carry_out"]
    assert handlers.background.lanes == [("approve", "urgent")]  # a start waits behind no read
    # what went wrong later is told, escaped
    assert notifier.told == ["Failed: DBbrain said &lt;!channel&gt;"]


def test_an_approval_the_database_did_not_take_is_said_so() -> None:
    handlers, service, notifier, ack = setup(approve=StoreError("the database did not answer"))
    body, action = click("approve")
    handlers.button(ack, body, action)
    assert service.calls == ["approve", "ack"]
    assert "your approval was not recorded" in notifier.told[0]


@pytest.mark.parametrize("value", ["1 OR 1=1", "9" * 40, "", "-1"])
def test_a_button_value_that_is_not_a_request_number_is_refused(value: str) -> None:
    handlers, service, notifier, ack = setup()
    body, action = click("approve", value)
    handlers.button(ack, body, action)
    assert service.calls == ["ack"]
    assert notifier.told == [messages.NOT_THIS_CHANNELS]


def test_a_click_that_names_no_card_is_refused() -> None:
    handlers, service, notifier, ack = setup()
    body, action = click("approve", message_ts=None)
    handlers.button(ack, body, action)
    assert service.calls == ["ack"]
    assert notifier.told == [messages.NOT_FROM_A_CARD]


def test_a_very_long_command_is_refused_before_it_is_read() -> None:
    handlers, service, _, ack = setup()
    handlers.command(ack, command("cdb-12345678 reason=" + "x" * 5000), client=None)  # type: ignore[arg-type]
    assert service.calls == ["ack"]
    assert "at most 4,000" in ack.calls[0]["text"]


@pytest.mark.parametrize(
    "metadata",
    ['{"channel_id": {"a": 1}}', '{"channel_id": ["C1"]}', '{"channel_id": "<!channel>"}', "[]"],
)
def test_a_form_from_nowhere_is_refused(metadata: str) -> None:
    handlers, service, _, ack = setup()
    view = {"private_metadata": metadata, "state": {"values": {}}, "id": "V1"}
    handlers.modal_submitted(ack, {"user": {"id": "U1"}}, view)
    assert service.calls == ["ack"]
    assert ack.calls[0]["response_action"] == "errors"
