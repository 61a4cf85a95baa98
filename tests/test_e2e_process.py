"""End to end with bots of their own: restarts, Socket Mode, cloud faults, SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from standins.dbbrain import DbbrainEmulator
from standins.slack_api import FakeSlack
from standins.slack_client import action_payload, command_payload
from tests.conftest import (
    APP_TOKEN,
    APPROVER,
    BOT_TOKEN,
    CHANNEL,
    REQUESTER,
    SECRET_KEY,
    SIGNING_SECRET,
    STRANGER,
    BotProcess,
    Driver,
    bot_env,
    buttons,
    card_text,
    new_instance,
    start_bot,
)

pytestmark = pytest.mark.e2e


def test_request_survives_a_crash_and_can_be_approved_after(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    bot = start_bot(tmp_path, slack, dbbrain)
    instance = new_instance()
    try:
        card = Driver(bot, slack, dbbrain).file(instance)
    finally:
        bot.stop(signal.SIGKILL)
    again = start_bot(tmp_path, slack, dbbrain, PORT=str(bot.port))
    try:
        driver = Driver(again, slack, dbbrain)
        driver.click("approve", card, APPROVER)
        running = driver.wait_card(card, "Running")
        created = [
            c for c in dbbrain.calls_of("CreateKillTask") if c.params["InstanceId"] == instance
        ]
        assert len(created) == 1 and created[0].request_id in card_text(running)
        driver.command("list")
        driver.ephemeral_to(REQUESTER, f"`{instance}` · Running")
    finally:
        assert again.stop() == 0


def test_sigterm_exits_cleanly(tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator) -> None:
    bot = start_bot(tmp_path, slack, dbbrain)
    assert bot.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize(
    ("answer", "title", "words"),
    [
        ({"error": "InternalError", "message": "backend hiccup"}, "Failed", "InternalError"),
        (
            {"error": "AuthFailure.SignatureFailure", "message": "bad signature"},
            "Failed",
            "refused the bot's own cloud credentials",
        ),
        (
            {"error": "UnauthorizedOperation", "message": "no CAM permission"},
            "Failed",
            "dbbrain:CreateKillTask",
        ),
        (
            {"error": "InvalidParameterValue", "message": "Host is not a valid IP"},
            "Failed",
            "Host is not a valid IP",
        ),
        ({"delay": 3.0}, "Outcome unknown", "will not be sent again"),
    ],
)
def test_cloud_faults_show_on_the_card(
    driver: Driver, answer: dict, title: str, words: str
) -> None:
    instance = new_instance()
    card = driver.file(instance)
    driver.dbbrain.script("CreateKillTask", answer)
    driver.click("approve", card, APPROVER)
    shown = driver.wait_card(card, title, timeout=15)
    assert words in card_text(shown)
    driver.wait_thread(card, title)

    # never re-sent on its own (a delayed call is recorded when the emulator finishes it)
    def creates() -> list:
        return [c for c in driver.dbbrain.calls if c.action == "CreateKillTask"
                and c.params.get("InstanceId") == instance]  # fmt: skip

    deadline = time.monotonic() + 6
    while not creates() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert len(creates()) == 1


def test_socket_mode_command_and_approve(tmp_path: Path, dbbrain: DbbrainEmulator) -> None:
    with FakeSlack(
        bot_token=BOT_TOKEN, app_token=APP_TOKEN, usergroups={"S0DBA": [APPROVER]}
    ) as slack:
        env = bot_env(tmp_path, slack, dbbrain, SLACK_APP_TOKEN=APP_TOKEN)
        env.pop("SLACK_SIGNING_SECRET")
        bot = BotProcess(env=env, log_path=tmp_path / "bot.log").start()
        try:
            assert slack.socket_connected(timeout=20), bot.log()
            instance = new_instance()
            ack = slack.socket_send(
                "slash_commands",
                command_payload(f"{instance} duration=5m user=app", user_id=REQUESTER),
            )
            assert "envelope_id" in ack
            posted = slack.wait_for(
                "chat.postMessage", lambda c: f" on {instance}:" in c.args.get("text", "")
            )
            ts = posted.response["ts"]
            request_id = posted.args["text"].split("#")[1].split()[0]
            ack = slack.socket_send(
                "interactive",
                action_payload(
                    "approve", request_id, user_id=APPROVER, channel_id=CHANNEL, message_ts=ts
                ),
            )
            assert "envelope_id" in ack
            slack.wait_for(
                "chat.update",
                lambda c: c.args.get("ts") == ts and "Running" in c.args.get("text", ""),
                timeout=10,
            )
            created = [c for c in dbbrain.calls_of("CreateKillTask")
                       if c.params["InstanceId"] == instance]  # fmt: skip
            assert len(created) == 1
        finally:
            assert bot.stop() == 0, bot.log()


def test_secrets_never_reach_logs_slack_or_audit(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    """Recognisable secrets, every flow (the failing ones too), then a scan of all it wrote."""
    token = "tok-RECOGNISABLE-7f1e2d"
    bot = start_bot(tmp_path, slack, dbbrain, LOG_LEVEL="DEBUG", TENCENTCLOUD_SESSION_TOKEN=token)
    answers: list[str] = []
    try:
        driver = Driver(bot, slack, dbbrain)
        ok = new_instance()
        answers.append(driver.command(f"preview {ok} user=app"))
        card = driver.file(ok)
        driver.click("refresh_preview", card, REQUESTER)
        driver.click("approve", card, APPROVER)
        driver.wait_card(card, "Running")
        driver.click("stop", card, APPROVER)
        driver.wait_card(card, "Stopped")
        rejected = driver.file(new_instance())
        driver.click("reject", rejected, APPROVER)
        driver.wait_card(rejected, "Rejected")
        failed = driver.file(new_instance())
        dbbrain.script("CreateKillTask", {"error": "AuthFailure.SecretIdNotFound", "message": "x"})
        driver.click("approve", failed, APPROVER)
        driver.wait_card(failed, "Failed")
        unknown = driver.file(new_instance())
        dbbrain.script("CreateKillTask", {"delay": 3.0})
        driver.click("approve", unknown, APPROVER)
        driver.wait_card(unknown, "Outcome unknown", timeout=15)
        for text in ("nonsense=1", "help", "list", "", f"stop {new_instance()}"):
            answers.append(driver.command(text))
        answers.append(driver.command(f"{new_instance()} duration=5m", user=STRANGER))
    finally:
        bot.stop()
    written = bot.log() + repr([c.args for c in slack.calls]) + "".join(answers)
    for database_file in tmp_path.glob("killtask.db*"):  # the WAL too
        written += database_file.read_bytes().decode("latin-1")
    for secret in (SECRET_KEY, SIGNING_SECRET, BOT_TOKEN, token):
        assert secret not in written
    assert dbbrain.calls[-1].token == token  # it was really in use


def test_crash_during_create_leaves_outcome_unknown_and_never_resends(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    bot = start_bot(tmp_path, slack, dbbrain)
    instance = new_instance()
    try:
        driver = Driver(bot, slack, dbbrain)
        card = driver.file(instance)
        dbbrain.script("CreateKillTask", {"delay": 2.0})
        driver.click("approve", card, APPROVER)
        driver.wait_card(card, "Approved, starting")
        dbbrain.wait_for_arrival("CreateKillTask", instance)  # in flight: the crash lands now
    finally:
        bot.stop(signal.SIGKILL)
    again = start_bot(tmp_path, slack, dbbrain)
    try:
        driver = Driver(again, slack, dbbrain)
        unknown = driver.wait_card(card, "Outcome unknown", timeout=15)
        assert "will not be sent again" in card_text(unknown)
        assert "stop" in buttons(unknown)
        driver.wait_thread(card, "Outcome unknown")
        time.sleep(1.0)
        created = [c for c in dbbrain.calls if c.action == "CreateKillTask"
                   and c.params.get("InstanceId") == instance]  # fmt: skip
        assert len(created) == 1
        # Stop resolves it: CancelKillTask is safe to send whatever happened
        driver.click("stop", card, APPROVER)
        driver.wait_card(card, "Stopped")
    finally:
        assert again.stop() == 0
