"""The Slack adapters against the Slack stand-in, and the small runtime parts (readiness, JSON
logs): every Slack failure becomes data, never an exception, and stale answers have a limit."""

from __future__ import annotations

import json
import logging

import pytest
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.health import Readiness
from bot.killtask import KillTaskSpec
from bot.logs import JsonLines
from bot.outcomes import CardPost
from bot.requests import KillRequest, State
from bot.slack.adapters import SlackMembership, SlackNotifier
from standins.slack_api import FakeSlack

BOT_TOKEN = "xoxb-test-token"


@pytest.fixture
def slack():
    with FakeSlack(bot_token=BOT_TOKEN, usergroups={"S0DBA": ["U0A"]}) as fake:
        yield fake


def client(slack: FakeSlack, timeout: int = 5) -> WebClient:
    return WebClient(
        token=BOT_TOKEN, base_url=slack.url, timeout=timeout,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=0)],
    )  # fmt: skip


def request(request_id: int = 1) -> KillRequest:
    spec = KillTaskSpec(instance_id="cdb-12345678", duration=600, user="app")
    return KillRequest(request_id, "C0INCIDENT", "U0REQ", spec, State.PENDING, 1e9, 1e9 + 60)


# ---------------------------------------------------------------- cards


def test_a_posted_card_carries_its_request_number_and_can_be_found(slack: FakeSlack) -> None:
    notifier = SlackNotifier(client(slack), api_url=slack.url)
    posted = notifier.post_card(request(5))
    assert posted.ts and not posted.unknown
    found_request = request(5)
    found_request = KillRequest(**{**found_request.__dict__, "created_at": float(posted.ts)})
    assert notifier.find_card(found_request) == CardPost(ts=posted.ts)
    other = KillRequest(**{**found_request.__dict__, "id": 6})
    assert notifier.find_card(other) == CardPost()


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"status": 500}, CardPost(error="internal_error", unknown=True)),
        ({"ok": False, "error": "not_in_channel"}, CardPost(error="not_in_channel")),
        ({"hang": 2}, CardPost(error="TimeoutError", unknown=True)),
    ],
)
def test_a_failed_card_post_says_whether_it_may_have_landed(
    slack: FakeSlack, fault: dict, expected: CardPost
) -> None:
    slack.script("chat.postMessage", fault)
    notifier = SlackNotifier(client(slack, timeout=1), api_url=slack.url)
    assert notifier.post_card(request()) == expected
    assert expected.permanent == (expected.error == "not_in_channel")


def test_a_channel_that_cannot_be_searched_means_unknown(slack: FakeSlack) -> None:
    slack.script("conversations.history", {"ok": False, "error": "missing_scope"})
    notifier = SlackNotifier(client(slack), api_url=slack.url)
    assert notifier.find_card(request()) == CardPost(unknown=True)


def test_updates_and_thread_replies_never_raise(slack: FakeSlack) -> None:
    slack.script("chat.update", {"hang": 2})
    notifier = SlackNotifier(client(slack, timeout=1), api_url=slack.url)
    moved = KillRequest(**{**request().__dict__, "message_ts": "1.2"})
    assert notifier.update_card(moved) is False


# ---------------------------------------------------------------- private replies


def test_replies_fall_back_to_response_url_on_slacks_hosts_only(slack: FakeSlack) -> None:
    notifier = SlackNotifier(client(slack), api_url=slack.url)
    slack.script("chat.postEphemeral", {"status": 500}, {"status": 500})
    notifier.tell("C1", "U0REQ", "first", slack.hook_url())
    assert [c.args["text"] for c in slack.calls_of("response_url")] == ["first"]
    notifier.tell("C1", "U0REQ", "second", "https://evil.example/hook")
    assert [c.args["text"] for c in slack.calls_of("response_url")] == ["first"]
    direct = slack.calls_of("chat.postMessage")
    assert [(c.args["channel"], c.args["text"]) for c in direct] == [("U0REQ", "second")]


# ---------------------------------------------------------------- user groups


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_membership_is_cached_and_a_failed_lookup_reuses_it_for_ten_minutes_only(
    slack: FakeSlack,
) -> None:
    clock = Clock()
    groups = frozenset({"S0DBA"})
    membership = SlackMembership(client(slack), ttl=60, stale_limit=600, clock=clock)
    assert membership.groups_of("U0A", groups) == groups
    clock.now = 61
    slack.script("usergroups.users.list", {"status": 500}, {"status": 500})
    assert membership.groups_of("U0A", groups) == groups  # Slack is down: the answer holds
    assert membership.unanswered(groups) == frozenset()
    clock.now = 601
    assert membership.groups_of("U0A", groups) == frozenset()  # too old: not a member
    assert membership.unanswered(groups) == groups
    clock.now = 700
    assert membership.groups_of("U0A", groups) == groups  # Slack is back
    assert membership.unanswered(groups) == frozenset()


# ---------------------------------------------------------------- runtime parts


def test_readiness_goes_stale_when_pings_stop_answering() -> None:
    clock, answers = Clock(), [None]

    def ping() -> None:
        if answers[0] is not None:
            raise answers[0]

    readiness = Readiness(ping, fresh_for=5, clock=clock)
    assert readiness.state()[0] is False  # not checked yet
    readiness.check_once()
    assert readiness.state() == (True, "ready")
    answers[0] = OSError("the database did not answer (OperationalError)")
    readiness.check_once()
    clock.now = 4
    assert readiness.state()[0] is True  # a ping a moment ago still vouches
    clock.now = 6
    ready, why = readiness.state()
    assert not ready and "did not answer" in why
    answers[0] = None
    readiness.check_once()
    readiness.connected = lambda: False
    assert readiness.state() == (False, "Slack Socket Mode: not connected")


def test_json_lines_carry_the_same_fields() -> None:
    record = logging.LogRecord(
        "bot.x", logging.WARNING, __file__, 1,
        "slack_call_failed method=%s request=%s error=%s", ("chat.update", 7, "timeout"), None,
    )  # fmt: skip
    data = json.loads(JsonLines().format(record))
    assert data["event"] == "slack_call_failed"
    assert (data["method"], data["request"], data["error"]) == ("chat.update", "7", "timeout")
    assert data["level"] == "WARNING" and data["logger"] == "bot.x"
    assert data["message"] == "slack_call_failed method=chat.update request=7 error=timeout"
