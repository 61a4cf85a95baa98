"""Shared fixtures: the stand-ins for Slack and DBbrain, and the real bot started as a process."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from standins.dbbrain import DbbrainEmulator
from standins.launch import PROXY_VARS, clean_env, free_port
from standins.launch import ROOT as ROOT  # re-exported: tests import it from here
from standins.launch import BotProcess as LaunchedBot
from standins.slack_api import FakeSlack, SlackCall
from standins.slack_client import SlackSender

SIGNING_SECRET = "test-signing-secret-5f3a9c"
BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"
SECRET_ID = "AKIDEMULATOR"
SECRET_KEY = "emulator-secret"

CHANNEL = "C0INCIDENT"
OTHER_CHANNEL = "C0RANDOM"
REQUESTER = "U0REQUESTER"
APPROVER = "U0APPROVER"  # a dba through the user group S0DBA
APPROVER2 = "U0APPROVER2"  # a dba too
COMMANDER = "U0BOSS"
STRANGER = "U0STRANGER"

POLICY = f"""
channels: [{CHANNEL}]
approval:
  required: 1
  allow_self_approval: false
  expires_after_minutes: 30
protected_users: [monitor]
roles:
  oncall:
    members: [{REQUESTER}]
    allow: [request, preview]
    instances: ["cdb-*"]
    products: [mysql]
    max_duration: 3600
  dba:
    members: [S0DBA]
    allow: [request, approve, reject, stop, preview]
    max_duration: -1
  commander:
    members: [{COMMANDER}]
    allow: [request, approve, reject, stop, preview, kill_all, break_glass]
    max_duration: -1
"""


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def new_instance() -> str:
    return f"cdb-{uuid.uuid4().hex[:10]}"


@dataclass
class BotProcess(LaunchedBot):
    """The real bot (`python -m bot`) with its settings pointed at the stand-ins: started and
    waited for by `standins.launch`, plus the signed-request sender the tests drive it with."""

    sender: SlackSender | None = None


def bot_env(
    tmp: Path, slack: FakeSlack, dbbrain: DbbrainEmulator, policy: str = POLICY, **extra: str
) -> dict[str, str]:
    policy_file = tmp / "policy.yaml"
    policy_file.write_text(policy)
    settings = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.url,
        "TENCENTCLOUD_SECRET_ID": SECRET_ID,
        "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
        "DBBRAIN_ENDPOINT": dbbrain.endpoint,
        "DBBRAIN_TIMEOUT": "2",
        "POLICY_FILE": str(policy_file),
        "DATABASE_URL": f"sqlite:///{tmp / 'killtask.db'}",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "HEALTH_PORT": str(free_port()),  # Socket Mode's health listener
        "TICK_SECONDS": "0.2",
        "LOG_LEVEL": "INFO",
        "DOTENV_PATH": str(tmp / "no.env"),
    }
    return clean_env(**(settings | extra))


def start_bot(
    tmp: Path, slack: FakeSlack, dbbrain: DbbrainEmulator, policy: str = POLICY, **extra: str
) -> BotProcess:
    env = bot_env(tmp, slack, dbbrain, policy, **extra)
    bot = BotProcess(env=env, log_path=tmp / "bot.log").start()
    bot.sender = SlackSender(bot.url, SIGNING_SECRET, hook_url=slack.hook_url())
    return bot


@pytest.fixture(scope="module")
def slack() -> FakeSlack:
    with FakeSlack(
        bot_token=BOT_TOKEN, app_token=APP_TOKEN, usergroups={"S0DBA": [APPROVER, APPROVER2]}
    ) as fake:
        yield fake


@pytest.fixture(scope="module")
def dbbrain() -> DbbrainEmulator:
    with DbbrainEmulator(keys={SECRET_ID: SECRET_KEY}) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory, slack: FakeSlack, dbbrain: DbbrainEmulator):
    for name in PROXY_VARS:
        os.environ.pop(name, None)
    process = start_bot(tmp_path_factory.mktemp("bot"), slack, dbbrain)
    yield process
    process.stop()


# ---------------------------------------------------------------- driving the bot as Slack does

_CARD_RE = re.compile(r"Kill-task request #(\d+) on (\S+): (.+)$")


@dataclass
class Card:
    request_id: int
    ts: str
    channel: str


class Driver:
    """What a person in the channel does, as signed Slack requests, and what they then see."""

    def __init__(self, bot: BotProcess, slack: FakeSlack, dbbrain: DbbrainEmulator):
        self.bot = bot
        self.slack = slack
        self.dbbrain = dbbrain
        assert bot.sender is not None
        self.sender = bot.sender
        self.answers: list[SlackCall] = []  # private answers given in a command's ack

    def command(self, text: str, user: str = REQUESTER, channel: str = CHANNEL, **kw):
        status, body, _ = self.sender.command(text, user_id=user, channel_id=channel, **kw)
        assert status == 200, body
        if body:
            answer = json.loads(body)
            if answer.get("response_type") == "ephemeral":
                args = {"channel": channel, "user": user, "text": answer.get("text", "")}
                self.answers.append(SlackCall("ack", args, None, time.time(), response=answer))
        return body

    def file(
        self, instance: str, filters: str = "duration=10m user=app", user: str = REQUESTER
    ) -> Card:
        self.command(f"{instance} {filters}", user=user)
        return self.card_posted(instance)

    def card_posted(self, instance: str, timeout: float = 10.0) -> Card:
        call = self.slack.wait_for(
            "chat.postMessage",
            lambda c: not c.args.get("thread_ts") and f" on {instance}:" in c.args.get("text", ""),
            timeout=timeout,
        )
        match = _CARD_RE.search(call.args["text"])
        assert match, call.args["text"]
        return Card(int(match.group(1)), call.response["ts"], call.args["channel"])

    def click(self, action: str, card: Card, user: str, channel: str | None = None, **kw):
        status, body, _ = self.sender.click(
            action,
            str(card.request_id),
            user_id=user,
            channel_id=channel or card.channel,
            message_ts=card.ts,
            **kw,
        )
        assert status == 200, body
        return status

    def card_state(self, card: Card) -> str:
        message = self.slack.message(card.channel, card.ts)
        assert message is not None
        match = _CARD_RE.search(message["text"])
        assert match, message["text"]
        return match.group(3)

    def wait_card(self, card: Card, title: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.card_state(card) == title:
                return self.slack.message(card.channel, card.ts) or {}
            time.sleep(0.05)
        raise AssertionError(f"card #{card.request_id} is {self.card_state(card)!r}, not {title!r}")

    def ephemeral_to(self, user: str, contains: str, timeout: float = 10.0) -> SlackCall:
        """A private answer: in a command's ack (instant), or a chat.postEphemeral later."""
        for answer in self.answers:
            if answer.args["user"] == user and contains in answer.args["text"]:
                return answer
        return self.slack.wait_for(
            "chat.postEphemeral",
            lambda c: c.args.get("user") == user and contains in c.args.get("text", ""),
            timeout=timeout,
        )

    def thread(self, card: Card) -> list[str]:
        return [m.get("text", "") for m in self.slack.thread_replies(card.channel, card.ts)]

    def wait_thread(self, card: Card, contains: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for text in self.thread(card):
                if contains in text:
                    return text
            time.sleep(0.05)
        raise AssertionError(f"no thread reply with {contains!r}: {self.thread(card)}")


@pytest.fixture
def driver(bot: BotProcess, slack: FakeSlack, dbbrain: DbbrainEmulator) -> Driver:
    return Driver(bot, slack, dbbrain)


def wait_until(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll `check` until it gives something true (returned), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def card_text(message: dict) -> str:
    """Every piece of text in a card's blocks, joined, for plain assertions."""
    parts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                parts.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message.get("blocks") or [])
    return "\n".join(parts)


def buttons(message: dict) -> list[str]:
    found = []
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("type") == "button":
                found.append(element["action_id"])
    return found


# ---------------------------------------------------------------- database servers

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _service_missing(what: str, why: str) -> None:
    message = f"{what} is not reachable ({why}); set its URL or start the server"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> str:
    """A fresh schema on the test PostgreSQL server, as a plain postgresql:// URL."""
    from sqlalchemy import create_engine, text

    base = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    schema = f"kt_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(base, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        _service_missing(f"PostgreSQL at {base}", type(exc).__name__)
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/test"


@pytest.fixture
def mysql_url() -> str:
    """The test MySQL/MariaDB server, checked to answer."""
    import pymysql

    from standins.sessions import parse_mysql_url

    url = os.environ.get("TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
    try:
        pymysql.connect(**parse_mysql_url(url), connect_timeout=3).close()
    except Exception as exc:
        _service_missing(f"MySQL/MariaDB at {url}", type(exc).__name__)
    return url
