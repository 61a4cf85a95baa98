"""The terminal chat: what you type goes to the bot as signed Slack requests; what the bot posts
to (stand-in) Slack comes back as readable text."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Iterable
from typing import TextIO

from rehearsal.render import plain, render_blocks
from standins.slack_api import FakeSlack
from standins.slack_client import SlackSender

HELP = """\
Type what you would type in Slack, and press a card's button by its label and request number:
  /killtask help                      the bot's own help
  /killtask preview cdb-rehearsal user=rehearsal_app command=Query
  /killtask cdb-rehearsal duration=5m user=rehearsal_app command=Query reason="slow reports"
  as U02APPROVER                      become someone else (see the policy printed at start)
  approve 1 · reject 1 · stop 1 · refresh 1
  sessions                            the live sessions on the rehearsal instance
  wait 3                              let 3 seconds pass
  help · quit"""

BUTTONS = {"approve": "approve", "reject": "reject", "stop": "stop", "refresh": "refresh_preview"}
_CARD = re.compile(r"Kill-task request #(\d+) on ")


class Chat:
    def __init__(
        self,
        sender: SlackSender,
        slack: FakeSlack,
        channel: str,
        user: str,
        out: TextIO,
        sessions: Callable[[], str],
    ):
        self.sender = sender
        self.slack = slack
        self.channel = channel
        self.user = user
        self.out = out
        self.sessions = sessions
        self.cards: dict[int, str] = {}  # request number -> the card's ts
        self.shown: dict[str, str] = {}  # ts -> the text last printed for that message
        self.seen = 0  # how many recorded Slack calls have been printed

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def run(self, lines: Iterable[str], echo: bool = True) -> None:
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if echo:
                self.say(f"{self.user}> {line}")
            if line in ("quit", "exit"):
                return
            self.handle(line)
            self.settle()

    def handle(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if line.startswith("/killtask"):
            text = line[len("/killtask") :].strip()
            status, _, answer = self.sender.command(
                text, user_id=self.user, channel_id=self.channel,
                response_url=self.slack.hook_url(),
            )  # fmt: skip
            if status != 200:
                self.say(f"(Slack would show an error: HTTP {status})")
            elif answer and answer.get("text"):
                self.say(f"(only you see this) {plain(answer['text'])}")
        elif word == "as" and rest:
            self.user = rest.strip()
            self.say(f"(you are now {self.user})")
        elif word in BUTTONS and rest.strip().lstrip("#").isdigit():
            self.press(BUTTONS[word], int(rest.strip().lstrip("#")))
        elif word == "sessions":
            self.say(self.sessions())
        elif word == "wait" and rest.strip().replace(".", "", 1).isdigit():
            time.sleep(min(float(rest), 120))
        elif word == "help":
            self.say(HELP)
        else:
            self.say(f"(not understood: {shlex.quote(line)}; type help)")

    def press(self, action_id: str, number: int) -> None:
        ts = self.cards.get(number)
        if ts is None:
            self.say(f"(there is no card for request #{number} in this channel)")
            return
        self.sender.click(
            action_id, str(number), user_id=self.user, channel_id=self.channel, message_ts=ts,
            response_url=self.slack.hook_url(),
        )  # fmt: skip

    def settle(self, quiet: float = 0.5, limit: float = 15.0) -> None:
        """Print what the bot posts until it has been quiet for a moment."""
        deadline = time.monotonic() + limit
        last_change = time.monotonic()
        while time.monotonic() < deadline:
            if self.print_new():
                last_change = time.monotonic()
            elif time.monotonic() - last_change >= quiet:
                return
            time.sleep(0.05)

    def print_new(self) -> bool:
        calls = self.slack.calls[self.seen :]
        self.seen += len(calls)
        printed = False
        for call in calls:
            printed |= self.show(call.method, call.args, call.response or {})
        return printed

    def show(self, method: str, args: dict, response: dict) -> bool:
        if method == "chat.postMessage" and args.get("thread_ts"):
            number = self._number(args["thread_ts"])
            self.say(f"  ↳ in the thread of #{number}: {plain(args.get('text', ''))}")
            return True
        if method in ("chat.postMessage", "chat.update"):
            ts = response.get("ts") or args.get("ts")
            match = _CARD.search(args.get("text", ""))
            if match and ts:
                self.cards[int(match.group(1))] = ts
            text = "\n".join(render_blocks(args.get("blocks") or [])) or plain(args.get("text", ""))
            before = self.shown.get(ts)
            if before == text:
                return False
            self.shown[ts] = text
            lines = text.splitlines()
            if before is None:
                self.say("┌── new card " + "─" * 40)
            else:  # an update: its title, then only the lines that changed
                self.say("┌── card updated (changed lines) " + "─" * 20)
                old = set(before.splitlines())
                lines = lines[:1] + [line for line in lines[1:] if line not in old]
            for line in lines:
                self.say(f"│ {line}")
            self.say("└" + "─" * 52)
            return True
        if method == "files.completeUploadExternal":  # files_upload_v2's last step
            number = self._number(str(args.get("thread_ts", "")))
            titles = ", ".join(str(f.get("title")) for f in args.get("files") or [])
            self.say(f"  ↳ in the thread of #{number}: a chart is attached ({plain(titles)})")
            return True
        if method in ("chat.postEphemeral", "response_url"):
            who = args.get("user") or self.user
            self.say(f"(only {who} sees this) {plain(args.get('text', ''))}")
            return True
        if method == "views.open":
            self.say("(a form would open here; in a rehearsal, use the one-line form)")
            return True
        return False

    def _number(self, ts: str) -> str:
        for number, card_ts in self.cards.items():
            if card_ts == ts:
                return str(number)
        return "?"
