"""Start a rehearsal: stand-ins on loopback, the real bot as its own process, the terminal chat."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

from rehearsal.chat import HELP, Chat
from rehearsal.simulated import simulated_rows
from standins.dbbrain import DbbrainEmulator
from standins.launch import BotNotReady, BotProcess, clean_env
from standins.sessions import MySQLSessions, Sessions, SessionsError, SimulatedSessions
from standins.slack_api import FakeSlack
from standins.slack_client import SlackSender

INSTANCE = "cdb-rehearsal"
SECOND = "cdb-rehearsal-south"  # simulated sessions, in a second region
REGIONS = {INSTANCE: "ap-shanghai", SECOND: "ap-guangzhou"}
CHANNEL = "C0REHEARSAL"
SECRET_ID, SECRET_KEY = "AKIDREHEARSAL", "rehearsal-secret-key"
BOT_TOKEN, SIGNING_SECRET = "xoxb-rehearsal", "rehearsal-signing-secret"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/"

POLICY = f"""\
# The rehearsal's policy: three people, one incident channel, one instance.
channels: [{CHANNEL}]
approval:
  required: 1
  allow_self_approval: false
  expires_after_minutes: 30
protected_users: [rehearsal_monitor]
effect:
  sample_seconds: 2    # a rehearsal is short: watch the card's trend move
roles:
  oncall:
    members: [U01REQUESTER]
    allow: [request, preview]
    max_duration: 3600
  dba:
    members: [U02APPROVER]
    allow: [request, approve, reject, stop, preview]
    max_duration: -1
  commander:
    members: [U03COMMANDER]
    allow: [request, approve, reject, stop, preview, kill_all, break_glass]
    max_duration: -1
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    parser.add_argument("--seed", action="store_true", help="open a few dozen sessions to kill")
    parser.add_argument("--script", type=Path, help="read the chat from this file, then stop")
    parser.add_argument("--as", dest="user", default="U01REQUESTER", help="who you are at first")
    args = parser.parse_args(argv)
    out = sys.stdout
    print(
        "killtask rehearsal mode: no Slack tokens are set, so the real bot runs against local "
        "stand-ins of Slack and DBbrain on 127.0.0.1. Nothing leaves this machine.",
        file=out,
        flush=True,
    )
    mysql_url = os.environ.get("REHEARSAL_MYSQL_URL") or DEFAULT_MYSQL_URL
    sessions, seeder, where = open_sessions(mysql_url, args.seed)
    print(where, file=out, flush=True)
    folder = Path(tempfile.mkdtemp(prefix="killtask-rehearsal-"))
    with (
        FakeSlack(bot_token=BOT_TOKEN) as slack,
        DbbrainEmulator(keys={SECRET_ID: SECRET_KEY}, backends={INSTANCE: sessions}) as emulator,
    ):
        emulator.set_process_list(SECOND, simulated_rows())
        for instance, region in REGIONS.items():
            emulator.place(instance, region, name=f"orders ({region})")
        bot = start_bot(folder, slack.url, emulator.endpoint)
        try:
            sender = SlackSender(bot.url, SIGNING_SECRET)
            chat = Chat(sender, slack, CHANNEL, args.user, out, lambda: describe(sessions))
            chat.settle(quiet=0.3, limit=3)
            where = ", ".join(f"{i} ({r})" for i, r in REGIONS.items())
            print(f"Instances {where} in channel {CHANNEL}. The policy:\n{POLICY}", file=out)
            print(HELP + "\n", file=out, flush=True)
            chat.run(*chat_lines(args.script, chat))
        finally:
            code = bot.stop()
            if seeder is not None:
                seeder.close()
            sessions.close()
    print(f"Rehearsal over (the bot exited with {code}). Its files are in {folder}.", file=out)
    return 0


def open_sessions(url: str, seed: bool) -> tuple[Sessions, object | None, str]:
    """The MySQL server if one answers, else a simulated process list; say which."""
    try:
        backend = MySQLSessions(url)
        backend.list()
    except (SessionsError, ValueError, ImportError) as exc:
        reason = str(exc).splitlines()[0][:120]
        return (
            SimulatedSessions(simulated_rows()),
            None,
            f"No MySQL server could be reached at {url} ({reason}): the sessions are simulated. "
            "Set REHEARSAL_MYSQL_URL to use a real one.",
        )
    seeder = None
    note = ""
    if seed:
        from rehearsal.seed import Seeder

        seeder = Seeder(url)
        count = seeder.open()
        note = f" Seeded {count} sessions under rehearsal_app, rehearsal_batch, rehearsal_report."
    else:
        note = " Add --seed to open a few dozen sessions to kill."
    return backend, seeder, f"Sessions come from the MySQL server at {url}.{note}"


def describe(sessions: Sessions) -> str:
    rows = [r for r in sessions.list() if not sessions.is_own(r)]
    counts = Counter((r["User"], r["Command"]) for r in rows if r["User"].startswith("rehearsal"))
    if not counts:
        return "(no sessions of the rehearsal accounts are alive)"
    parts = [f"{user} {command}: {n}" for (user, command), n in sorted(counts.items())]
    return "Live sessions: " + " · ".join(parts)


def chat_lines(script: Path | None, chat: Chat):  # type: ignore[no-untyped-def]
    """(lines, echo): a script file, piped standard input, or an interactive prompt."""
    if script is not None:
        return script.read_text().splitlines(), True
    if not sys.stdin.isatty():
        return sys.stdin, True

    def prompt():  # type: ignore[no-untyped-def]
        while True:
            try:
                yield input(f"{chat.user}> ")
            except EOFError:
                return

    return prompt(), False


def start_bot(folder: Path, slack_url: str, dbbrain_url: str) -> BotProcess:
    """The real bot on loopback, pointed at the stand-ins, ready to answer."""
    (folder / "policy.yaml").write_text(POLICY)
    env = {k: v for k, v in clean_env().items() if not k.startswith("TENCENTCLOUD_")}
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack_url,
        TENCENTCLOUD_SECRET_ID=SECRET_ID,
        TENCENTCLOUD_SECRET_KEY=SECRET_KEY,
        DBBRAIN_ENDPOINT=dbbrain_url,
        POLICY_FILE=str(folder / "policy.yaml"),
        DATABASE_URL=f"sqlite:///{folder / 'killtask.db'}",
        HOST="127.0.0.1",
        TICK_SECONDS="1",
        LOG_LEVEL="WARNING",
        DOTENV_PATH=str(folder / "no.env"),
    )
    try:
        return BotProcess(env, folder / "bot.log").start(timeout=30)
    except BotNotReady as exc:
        raise SystemExit(f"the bot did not start; see {folder / 'bot.log'}") from exc
