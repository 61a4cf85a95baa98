"""Hostile input, end to end: whatever people type, and whatever DBbrain answers, reaches Slack
as text. Every message the bot can send is driven with hostile values, then everything it sent
(cards, thread replies, ephemerals, response_url replies, direct messages) is searched for a
live mention or disguised link that came from input."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from bot.killtask import KILLABLE_COMMANDS
from bot.reading import dbbrain_time
from standins.dbbrain import DbbrainEmulator
from standins.slack_api import FakeSlack
from tests.conftest import (
    APP_TOKEN,
    APPROVER,
    BOT_TOKEN,
    COMMANDER,
    POLICY,
    REQUESTER,
    Driver,
    new_instance,
    start_bot,
)

pytestmark = pytest.mark.e2e

# As Slack sends them (it escapes &, < and > that people type) and as a person could get them
# through unescaped (@channel typed with "escape channels" on arrives as <!channel>).
HOSTILE = (
    "<!channel> <!here> <!everyone> <@UEVIL> <!subteam^SEVIL> "
    "<https://evil.example|click here to approve>"
)
TYPED = HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
LIVE = re.compile(r"<!channel>|<!here>|<!everyone>|<@UEVIL>|<!subteam\^SEVIL>|<https://evil")


# Every nudge on, and fast: the filing's mention, reminder, escalation, "still running".
NUDGING = (
    POLICY.replace(
        "  expires_after_minutes: 30\n",
        "  expires_after_minutes: 30\n  notify: [S0DBA]\n  remind_after_minutes: 0.02\n"
        f"  escalate_after_minutes: 0.03\n  escalate_to: [{COMMANDER}]\n",
    )
    + "running:\n  remind_every_minutes: 0.02\n"
)


def strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


@pytest.fixture
def fresh_slack():
    with FakeSlack(
        bot_token=BOT_TOKEN, app_token=APP_TOKEN, usergroups={"S0DBA": [APPROVER]}
    ) as fake:
        yield fake


def test_nothing_typed_or_answered_goes_live(
    tmp_path: Path, fresh_slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    slack = fresh_slack
    bot = start_bot(tmp_path, slack, dbbrain, NUDGING)
    try:
        drive_every_message(Driver(bot, slack, dbbrain), slack, dbbrain)
        drive_nudges_and_home(Driver(bot, slack, dbbrain), slack)
    finally:
        assert bot.stop() == 0
    sent = [(c.method, s) for c in slack.calls for s in strings(c.args)]
    live = [(method, text) for method, text in sent if LIVE.search(text)]
    assert live == [], live[:5]
    # ...and the hostile words did arrive, as text
    assert any("&lt;!channel&gt;" in text for _, text in sent)
    assert {
        "chat.postMessage", "chat.update", "chat.postEphemeral", "response_url", "views.publish"
    } <= {method for method, _ in sent}  # fmt: skip


def wait_for_preview(slack: FakeSlack, card) -> None:  # type: ignore[no-untyped-def]
    import time

    from tests.conftest import card_text

    deadline = time.monotonic() + 10
    while "Live preview" not in card_text(slack.message(card.channel, card.ts) or {}):
        assert time.monotonic() < deadline, "no preview on the card"
        time.sleep(0.05)


def drive_every_message(driver: Driver, slack: FakeSlack, dbbrain: DbbrainEmulator) -> None:
    instance = new_instance()
    dbbrain.set_process_list(
        instance,
        [
            {"ID": "7", "User": "app", "Host": "10.0.0.5:3306", "DB": "orders", "Command": "Query",
             "Time": "30", "State": HOSTILE[:60], "Info": f"SELECT 1 /* {HOSTILE} */"},
        ],
    )  # fmt: skip
    # the preview reply: sessions DBbrain reported, with hostile statement text
    driver.command(f'preview {instance} user=app info="SELECT 1 /* {TYPED}"')
    driver.ephemeral_to(REQUESTER, "Preview for")
    # mistakes echo what was typed: keys, values, options
    driver.command(f"{instance} duration=soon {TYPED[:20]}=1 host={TYPED[:30]}")
    driver.command(f"{instance} duration=5m user=app --{TYPED[:12]}")
    # a filing with a hostile reason and statement prefix, approved and stopped with a reason
    card = driver.file(instance, f'duration=10m user=app info="SELECT 1" reason="{TYPED}"')
    driver.command("list")
    driver.ephemeral_to(REQUESTER, "Open kill tasks")
    driver.click("approve", card, APPROVER)
    driver.wait_card(card, "Running")
    driver.command(f'stop {instance} reason="{TYPED}"', user=APPROVER)
    driver.wait_card(card, "Stopped")
    driver.wait_thread(card, "stopped the kill task")
    # the stop's answer comes after its summary and chart: wait, so no fault below meets it
    driver.ephemeral_to(APPROVER, "is stopped", timeout=30)
    # break-glass: the reason is quoted in the thread
    glass = new_instance()
    driver.command(f'{glass} duration=5m user=app reason="{TYPED}" --break-glass', user=COMMANDER)
    glass_card = driver.card_posted(glass)
    driver.wait_thread(glass_card, "SKIPPED APPROVAL")
    driver.wait_card(glass_card, "Running")  # a stop while it is still starting is refused
    driver.command(f"stop {glass}", user=COMMANDER)
    driver.wait_card(glass_card, "Stopped")
    driver.ephemeral_to(COMMANDER, "is stopped", timeout=30)
    # DBbrain's own words: on the card, in the thread, in private answers
    failing = new_instance()
    dbbrain.script("CreateKillTask", {"error": "InvalidParameterValue", "message": HOSTILE})
    failed = driver.file(failing)
    driver.click("approve", failed, APPROVER)
    driver.wait_card(failed, "Failed")
    dbbrain.script("CancelKillTask", {"error": "InternalError", "message": HOSTILE})
    driver.command(f"stop {new_instance()}", user=APPROVER)
    driver.ephemeral_to(APPROVER, "Could not stop")
    pending = driver.file(new_instance())
    driver.wait_card(pending, "Waiting for approval")
    wait_for_preview(slack, pending)  # the filing's own read is done: the next one is ours
    dbbrain.script("DescribeMySqlProcessList", {"error": "InternalError", "message": HOSTILE})
    driver.click("refresh_preview", pending, REQUESTER)
    driver.ephemeral_to(REQUESTER, "Could not read the sessions")
    # a one-shot kill of sessions with hostile accounts, a lock warning naming a hostile holder,
    # and DBbrain's diagnosis with a hostile event name: on the card and in the summary
    shot = new_instance()
    now = time.time()
    dbbrain.diag_events[shot] = [
        {"InstanceId": shot, "Severity": 3, "DiagItem": HOSTILE[:60],
         "StartTime": dbbrain_time(now - 60), "EndTime": dbbrain_time(now)},
    ]  # fmt: skip
    waiter = {"Host": f"{HOSTILE[:20]}:1", "DB": "orders", "Command": "Query", "Time": "5",
              "State": "Waiting for table metadata lock", "Info": HOSTILE}  # fmt: skip
    dbbrain.set_process_list(
        shot,
        [
            {**waiter, "ID": "21", "User": HOSTILE[:30]},
            {**waiter, "ID": "22", "User": HOSTILE[30:60]},
            {**waiter, "ID": "20", "User": HOSTILE[:40], "Command": "Sleep", "State": "",
             "Time": "90"},
        ],
    )  # fmt: skip
    once = driver.file(shot, "duration=once command=Query")
    wait_for_preview(slack, once)
    driver.click("approve", once, APPROVER)
    driver.wait_card(once, "Killed 2 sessions")
    driver.wait_thread(once, "Summary of one-shot kill")
    # when the ephemeral fails, the same words go through response_url
    slack.script("chat.postEphemeral", {"status": 500})
    driver.command(f"{instance} duration=5m user=app reason=x --{TYPED[:12]}")
    driver.command(f'preview {instance} user=app info="SELECT 1 /* {TYPED}"')
    slack.wait_for("response_url", lambda c: "Preview for" in json.dumps(c.args))


def drive_nudges_and_home(driver: Driver, slack: FakeSlack) -> None:
    """Reminders, escalations, "still running", direct messages and App Home, with typed
    words in the filters and the reason."""
    from tests.conftest import card_text

    sender = driver.sender
    card = driver.file(
        new_instance(), f'duration=10m user=app info="SELECT 1 /* {TYPED}" reason="{TYPED}"'
    )
    driver.wait_thread(card, ":bell:")
    driver.wait_thread(card, ":rotating_light:")
    sender.home_opened(APPROVER)
    slack.wait_for("views.publish", lambda c: "&lt;!channel&gt;" in json.dumps(c.args))
    sender.home_click("home_approve", str(card.request_id), user_id=APPROVER)
    driver.wait_card(card, "Running")
    driver.wait_thread(card, "still killing on")
    sender.home_click("home_stop", str(card.request_id), user_id=APPROVER)
    driver.wait_card(card, "Stopped")
    slack.wait_for(
        "chat.postMessage",
        lambda c: c.args.get("channel") == REQUESTER and "was stopped" in c.args.get("text", ""),
    )
    sender.home_click("home_reject", TYPED[:40], user_id=APPROVER)
    slack.wait_for(
        "chat.postMessage", lambda c: "does not name a request" in c.args.get("text", "")
    )
    sender.home_opened(REQUESTER)
    slack.wait_for(
        "views.publish",
        lambda c: c.args.get("user_id") == REQUESTER and "Stopped" in card_text(c.args["view"]),
    )


# ---------------------------------------------------------------- malformed requests


def raw_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"{url}/slack/events", body, headers, method="POST")
    try:
        with opener.open(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def signed(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> dict[str, str]:
    import hashlib
    import hmac
    import time

    from tests.conftest import SIGNING_SECRET

    ts = str(int(time.time()))
    mac = hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={mac.hexdigest()}",
        "Content-Type": content_type,
    }


def test_malformed_requests_are_refused_before_they_cost_anything(
    tmp_path: Path, fresh_slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    import time

    bot = start_bot(tmp_path, fresh_slack, dbbrain)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    forged_line = b"text=x\n2026-11-29 level=INFO approve outcome=recorded request=1"
    unsigned = [
        (b"{not json", {**form, "Content-Type": "application/json"}),
        (b"payload=%7Bnot+json", form),
        (b"\xff\xfe\x00raw", form),
        (forged_line, form),
        (b"text=x", {**form, "X-Slack-Request-Timestamp": "¹²³", "X-Slack-Signature": "v0=00"}),
        (b"text=x", {**form, "X-Slack-Request-Timestamp": "9" * 5000, "X-Slack-Signature": "v0=0"}),
    ]
    try:
        before = len(bot.log().splitlines())
        for body, headers in unsigned:
            assert raw_post(bot.url, body, headers)[0] == 401
        assert raw_post(bot.url, b"a" * (2 << 20), form)[0] == 413
        assert raw_post(bot.url, b"\xff\xfe", signed(b"\xff\xfe"))[0] == 400
        assert raw_post(bot.url, b"payload=%7Bx", signed(b"payload=%7Bx"))[0] == 400
        body = b"{nope"
        assert raw_post(bot.url, body, signed(body, "application/json"))[0] == 400
        time.sleep(0.3)
        added = bot.log().splitlines()[before:]
        assert len(added) <= len(unsigned) + 4  # at most one short line each
        assert all(len(line) < 300 for line in added)
        assert "outcome=recorded" not in "\n".join(added) and "Traceback" not in bot.log()
        assert not fresh_slack.calls_of("chat.postMessage")
    finally:
        assert bot.stop() == 0


def test_replies_never_go_to_a_foreign_response_url(
    tmp_path: Path, fresh_slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    with FakeSlack(bot_token=BOT_TOKEN) as elsewhere:
        bot = start_bot(tmp_path, fresh_slack, dbbrain)
        foreign = elsewhere.hook_url().replace("127.0.0.1", "localhost")
        try:
            fresh_slack.script("chat.postEphemeral", {"status": 500})
            driver = Driver(bot, fresh_slack, dbbrain)
            driver.sender.command("list", user_id=REQUESTER, response_url=foreign)
            dm = fresh_slack.wait_for("chat.postMessage", lambda c: c.args["channel"] == REQUESTER)
            assert "Open kill tasks" in dm.args["text"] or "No pending" in dm.args["text"]
            assert elsewhere.calls == []
        finally:
            assert bot.stop() == 0


# ---------------------------------------------------------------- guardrails and limits


@pytest.mark.parametrize(
    "filters",
    [
        "time=1",
        "time=59",
        'info="%%%%"',
        'info="S%_%"',
        'command="' + ",".join(sorted(KILLABLE_COMMANDS)) + '"',
    ],
)
def test_near_total_filters_need_kill_all(driver: Driver, filters: str) -> None:
    body = driver.command(f"{new_instance()} duration=5m {filters}")
    answer = json.loads(body)["text"]
    assert "needs `kill_all`" in answer, answer


def test_a_very_long_command_is_refused_at_once(driver: Driver) -> None:
    answer = json.loads(driver.command(f"{new_instance()} duration=5m reason={'x' * 5000}"))
    assert "at most 4,000" in answer["text"] and "Nothing was filed" in answer["text"]


def test_when_slack_cannot_say_who_is_in_a_group_the_refusal_says_so(
    tmp_path: Path, fresh_slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    bot = start_bot(tmp_path, fresh_slack, dbbrain)
    try:
        driver = Driver(bot, fresh_slack, dbbrain)
        # Slack fails before the bot ever learnt who is in S0DBA: nothing to fall back on
        fresh_slack.script("usergroups.users.list", *[{"status": 500}] * 6)
        card = driver.file(new_instance())  # the requester is named in the policy directly
        driver.click("approve", card, APPROVER)  # a dba only through the group S0DBA
        told = driver.ephemeral_to(APPROVER, "Slack could not be asked")
        assert "Not allowed" in told.args["text"]
        assert driver.card_state(card) == "Waiting for approval"
    finally:
        assert bot.stop() == 0


def test_the_word_payload_does_not_make_a_command_vanish(driver: Driver) -> None:
    """Bolt takes any form body with "payload" in it for an interactive payload."""
    instance = new_instance()
    driver.command(f'{instance} duration=5m user=app reason="payload service is melting"')
    card = driver.card_posted(instance)
    driver.command("list", channel_name="payload-incidents")
    driver.ephemeral_to(REQUESTER, f"`{instance}`")
    assert card.request_id > 0
