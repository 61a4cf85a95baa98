"""The plumbing every section shares: start the bot or bare Bolt, send load, read memory and
CPU, keep notes of what went wrong."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bench import load
from bench.config import APPROVER, CHANNEL, POLICY, REQUESTER, SIGNING_SECRET, Knobs
from bench.procs import cpu_seconds, machine_busy, peak_rss, pss_now, worker_pid
from bench.results import Memory, Results, Start
from bench.seed import Database, Pending, command_text
from bench.standins import BOT_TOKEN, KEYS, Standins
from standins.launch import BotProcess, clean_env

SECRET_A, SECRET_B = sorted(KEYS)
PREVIEW_READ = "DescribeMySqlProcessList"  # the DBbrain call behind a filing's live preview
HOST = "127.0.0.1"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def instance_id() -> str:
    return f"cdb-{uuid.uuid4().hex[:14]}"


class Harness:
    def __init__(self, knobs: Knobs, standins: Standins, work: Path):
        self.k = knobs
        self.st = standins
        self.work = work
        self.policy_file = work / "policy.yaml"
        self.policy_file.write_text(POLICY)
        self.results = Results()
        self.started: list[BotProcess] = []
        # The estate: every instance a filing names, already in the instance list the bot
        # caches (as after its periodic read of DBbrain's), in every database a bot runs on.
        self.estate: list[str] = []
        self.databases: dict[str, Database] = {}
        self.postgres: str | None = None

    def note(self, text: str) -> None:
        self.results.notes.append(text)

    # ------------------------------------------------------------ processes

    def bot_env(self, db: Database, secret_id: str = SECRET_A, **extra: str) -> dict[str, str]:
        return clean_env(
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=self.st.slack_url,
            TENCENTCLOUD_SECRET_ID=secret_id,
            TENCENTCLOUD_SECRET_KEY=KEYS[secret_id],
            DBBRAIN_ENDPOINT=self.st.dbbrain_endpoint,
            POLICY_FILE=str(self.policy_file),
            DATABASE_URL=db.url,
            HOST=HOST,
            LOG_LEVEL="INFO",
            DOTENV_PATH=str(self.work / "no.env"),
            **extra,
        )

    def start_bot(
        self, db: Database, label: str, secret_id: str = SECRET_A, **extra: str
    ) -> BotProcess:
        self.databases[db.url] = db
        if not db.has_schema():
            # The bot creates it; the list goes in once it is up, before its first tick.
            bot = self._start("bot", self.bot_env(db, secret_id, **extra), label)
            db.seed_instances(self.estate, fresh=True)
            return bot
        db.seed_instances(self.estate, fresh=True)
        return self._start("bot", self.bot_env(db, secret_id, **extra), label)

    def start_baseline(self) -> BotProcess:
        env = clean_env(
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=self.st.slack_url,
            HOST=HOST,
            LOG_LEVEL="INFO",
        )
        return self._start("bench.baseline", env, "bare Bolt app")

    def _start(self, module: str, env: dict[str, str], label: str) -> BotProcess:
        name = f"{'bot' if module == 'bot' else 'baseline'}-{len(self.started)}"
        bot = BotProcess(env, self.work / f"{name}.log", module=module)
        self.started.append(bot)
        bot.start(timeout=60)
        assert bot.startup is not None
        self.results.starts.append(Start(label, bot.startup, module == "bot"))
        log(f"{name} up in {bot.startup:.2f}s ({label})")
        return bot

    def finish(self, bot: BotProcess, phase: str, graceful: bool = False, record: bool = True):
        """Read the peak RSS, then stop (SIGTERM, drains) or kill (SIGKILL, no drain)."""
        if record:
            master, worker, other = peak_rss(bot)
            is_bot = bot.module == "bot"
            memory = Memory(phase, master, worker, other, is_bot, pss_now(bot))
            self.results.memory.append(memory)
        if graceful:
            bot.stop()
        else:
            bot.kill()
        self.scan_log(bot, phase)

    def scan_log(self, bot: BotProcess, phase: str) -> None:
        lines = bot.log().splitlines()
        bad = [i for i, line in enumerate(lines) if "level=ERROR" in line or "Traceback" in line]
        if not bad:
            return
        first = lines[bad[0]][:200]
        # The exception that ends the first traceback, if there is one.
        follow = [t for t in lines[bad[0] + 1 : bad[0] + 60] if t and not t[0].isspace()]
        shown = [first] + [t[:200] for t in follow[:1] if "level=" not in t]
        self.note(
            f"{phase}: the log has {len(bad)} ERROR/Traceback line(s) ({bot.log_path.name}); "
            f"first: `{' … '.join(shown)}`."
        )

    def kill_all(self) -> None:
        for bot in self.started:
            with contextlib.suppress(Exception):
                bot.kill()

    # ------------------------------------------------------------ load

    def run(
        self, bot: BotProcess, prepared: list[load.Prepared], concurrency: int, phase: str
    ) -> load.Result:
        """Closed loop, with the CPU each side used meanwhile."""
        return self.measured(
            bot, phase, lambda: load.run(HOST, bot.port, prepared, concurrency), profile=True
        )

    def open_loop(
        self, bot: BotProcess, schedule: Sequence[tuple[float, load.Prepared]], phase: str
    ) -> load.Result:
        return self.measured(bot, phase, lambda: load.open_loop(HOST, bot.port, schedule))

    def measured(
        self, bot: BotProcess, phase: str, go: Callable[[], load.Result], profile: bool = False
    ) -> load.Result:
        pids = {"bot": bot.pids(), "stand-ins": [self.st.pid], "client": [os.getpid()]}
        before = {name: cpu_seconds(group) for name, group in pids.items()}
        busy_before, total_before = machine_busy()
        with self.profiling(bot, phase) if profile else contextlib.nullcontext():
            result = go()
        result.cpu = {name: cpu_seconds(group) - before[name] for name, group in pids.items()}
        busy, total = machine_busy()
        result.cpu["machine"] = (busy - busy_before) / max(total - total_before, 1e-9)
        self.account(phase, result)
        return result

    def account(self, phase: str, result: load.Result) -> None:
        if "warm-up" not in phase:
            self.results.errors.append((phase, result.errors, result.non_200))
        if result.errors or result.non_200:
            self.note(
                f"{phase}: {result.errors} error(s), statuses {dict(result.statuses)}"
                + (f", first: {result.first_error}" if result.first_error else "")
            )

    @contextlib.contextmanager
    def profiling(self, bot: BotProcess, phase: str) -> Iterator[None]:
        """py-spy on the bot's worker while a timed run lasts (BENCH_PROFILE)."""
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        worker = worker_pid(bot) or (bot.pids() or [None])[0]
        if self.k.profile is None or "warm-up" in phase or spy is None or worker is None:
            yield
            return
        self.k.profile.mkdir(parents=True, exist_ok=True)
        name = "".join(ch if ch.isalnum() else "-" for ch in f"{bot.log_path.stem}-{phase}")
        command = [spy, "record", "-p", str(worker), "-f", "raw", "-r", "200", "--nonblocking"]
        command += ["-o", str(self.k.profile / f"{name}.txt")]
        command += ["--idle"] if self.k.profile_idle else ["--gil"]
        recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # let it attach
        try:
            yield
        finally:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                recorder.wait(30)
            except subprocess.TimeoutExpired:
                recorder.kill()

    # ------------------------------------------------------------ requests

    def commands(self, n: int, verb: str = "") -> list[load.Prepared]:
        """`n` valid filings (or previews, `verb="preview"`), each on an instance of its own,
        listed in the estate; each is tagged with its instance."""
        named = [instance_id() for _ in range(n)]
        self.estate += named
        for db in self.databases.values():
            db.seed_instances(named)
        made = []
        for instance in named:
            text = f"{verb} {command_text(instance)}".strip()
            made.append(load.command(SIGNING_SECRET, text, REQUESTER, CHANNEL, tag=instance))
        return made

    @staticmethod
    def clicks(pending: Sequence[Pending], action: str = "approve") -> list[load.Prepared]:
        return [
            load.click(SIGNING_SECRET, action, p.request_id, APPROVER, p.channel, p.ts)
            for p in pending
        ]

    @staticmethod
    def fake_pending(n: int) -> list[Pending]:
        """Buttons for the bare Bolt app, which only acks them."""
        return [Pending(i, "cdb-none", CHANNEL, f"1900000000.{i:06d}") for i in range(n)]

    def filed(self, what: str, prepared: Sequence[load.Prepared], timeout: float) -> None:
        """Wait until each of these filings has its card and its preview read (the work a
        filing does after its ack), or note that it did not in time."""
        instances = [p.tag for p in prepared]
        deadline = time.monotonic() + timeout
        ok = self.st.wait_cards_of(instances, timeout) and self.st.wait_calls_of(
            PREVIEW_READ, instances, max(0.0, deadline - time.monotonic())
        )
        self.settle(what, ok)

    def idle(self, what: str, quiet: float = 1.5, timeout: float = 60.0) -> None:
        """Wait until DBbrain has had no call for `quiet` seconds: the work behind earlier
        requests (their preview reads, through the rate limit) is done."""
        deadline = time.monotonic() + timeout
        seen, since = len(self.st.cloud_calls()), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = len(self.st.cloud_calls())
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
        self.settle(what, False)

    def settle(self, what: str, ok: bool) -> None:
        if not ok:
            self.note(f"{what}: timed out waiting for the bot.")
            log(f"timed out: {what}")
