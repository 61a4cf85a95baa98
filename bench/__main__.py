"""`make bench`: the real bot under load on this machine, against the local stand-ins.

Prints a markdown report and writes it to BENCH_OUT (default docs/benchmarks.md). Knobs, all
optional (environment variables):

  BENCH_REQUESTS            requests per concurrency level, commands and clicks each (2000)
  BENCH_LEVELS              concurrency levels ("1,10,50")
  BENCH_ROUNDS              rounds the ack runs are split into, ours and bare Bolt's alternating (3)
  BENCH_GROWTH              past requests in the store for the growth runs ("0,10000,100000")
  BENCH_GROWTH_REQUESTS     requests per growth run, commands and clicks each (2000)
  BENCH_GROWTH_CONCURRENCY  concurrency of the growth runs (10)
  BENCH_GROWTH_ROUNDS       the growth sizes are measured in turn, this many rounds (2)
  BENCH_GROWTH_CLOUD_SAMPLES  approvals timed to DBbrain per growth size and round (10)
  BENCH_CLOUD_SAMPLES       approvals timed to DBbrain, per emulator delay (100)
  BENCH_BURST               approvals sent at once in the rate-limit runs (200)
  BENCH_WARMUP              untimed requests before each timed run (20)
  BENCH_OUT                 where the markdown goes (docs/benchmarks.md)
  BENCH_POSTGRES_URL        PostgreSQL to use (postgresql://postgres@127.0.0.1:5432/test);
                            unreachable: the PostgreSQL parts are skipped, and the report says so
  BENCH_ONLY                some of: acks, cloud, rate, growth (all of them)
  BENCH_PROFILE             a folder: record each timed run of the bot with py-spy (which must
                            be installed, e.g. `.venv/bin/pip install py-spy`), raw format,
                            threads holding the GIL only (BENCH_PROFILE_IDLE=1: all threads)
  BENCH_KEEP=1              keep the working folder (bot logs, SQLite files) and print its path
  BENCH_STRICT=1            exit 1 when a target is missed (default: exit 0, the report says)
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text

from bench import load
from bench.procs import ROOT, Server, clean_env, cpu_seconds, machine_busy
from bench.report import mb, ms, ratio, table, verdict
from bench.seed import Database, Pending, command_text, store_timings
from bench.standins import BOT_TOKEN, KEYS, Standins

SIGNING_SECRET = "bench-signing-secret-7c1e"
REQUESTER = "U0BENCHREQ"
APPROVER = "U0BENCHOK"
CHANNEL = "C0BENCH"
SECRET_A, SECRET_B = sorted(KEYS)
RATE_LIMIT = 20  # DBbrain calls per second, per process and in total
# Each approval makes two DBbrain calls (the preview read again, then CreateKillTask): one
# approval every 150 ms is 13 calls a second, so the rate limit never delays a timed approval.
CLOUD_PACE = 0.15

# channels left out: every channel; generous durations; one approval from someone else.
POLICY = f"""
approval:
  required: 1
  allow_self_approval: false
  expires_after_minutes: 600
roles:
  requesters:
    members: [{REQUESTER}]
    allow: [request, preview]
    max_duration: -1
  approvers:
    members: [{APPROVER}]
    allow: [request, approve, reject, stop, preview]
    max_duration: -1
"""

TARGETS = {
    "ack_ratio": 1.5,  # our ack p99 at the highest level ÷ the bare Bolt app's
    "ack_p99": 0.100,  # seconds, at the highest level
    "cloud_p50": 0.050,  # seconds, approval to CreateKillTask, instant emulator
    "startup": 1.5,  # seconds, process start to /healthz
    "rss_mb": 150.0,  # VmHWM of the master and of the worker
    "growth": 0.20,  # ack p99 at the most past requests vs none
}


PHASES = ("acks", "cloud", "rate", "growth")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def env_list(name: str, default: str) -> list[int]:
    raw = os.environ.get(name) or default
    return [int(part) for part in raw.replace(" ", "").split(",") if part]


@dataclass
class Knobs:
    requests: int = field(default_factory=lambda: env_int("BENCH_REQUESTS", 2000))
    levels: list[int] = field(default_factory=lambda: env_list("BENCH_LEVELS", "1,10,50"))
    rounds: int = field(default_factory=lambda: env_int("BENCH_ROUNDS", 3))
    growth: list[int] = field(default_factory=lambda: env_list("BENCH_GROWTH", "0,10000,100000"))
    growth_requests: int = field(default_factory=lambda: env_int("BENCH_GROWTH_REQUESTS", 2000))
    growth_rounds: int = field(default_factory=lambda: env_int("BENCH_GROWTH_ROUNDS", 2))
    growth_cloud_samples: int = field(
        default_factory=lambda: env_int("BENCH_GROWTH_CLOUD_SAMPLES", 10)
    )
    growth_concurrency: int = field(default_factory=lambda: env_int("BENCH_GROWTH_CONCURRENCY", 10))
    cloud_samples: int = field(default_factory=lambda: env_int("BENCH_CLOUD_SAMPLES", 100))
    burst: int = field(default_factory=lambda: env_int("BENCH_BURST", 200))
    warmup: int = field(default_factory=lambda: env_int("BENCH_WARMUP", 20))
    out: Path = field(
        default_factory=lambda: ROOT / os.environ.get("BENCH_OUT", "docs/benchmarks.md")
    )
    postgres_url: str = field(
        default_factory=lambda: (
            os.environ.get("BENCH_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
        )
    )
    only: set[str] = field(
        default_factory=lambda: set(
            (os.environ.get("BENCH_ONLY") or ",".join(PHASES)).replace(" ", "").split(",")
        )
    )
    profile: Path | None = field(
        default_factory=lambda: Path(p) if (p := os.environ.get("BENCH_PROFILE")) else None
    )
    profile_idle: bool = field(default_factory=lambda: os.environ.get("BENCH_PROFILE_IDLE") == "1")
    keep: bool = field(default_factory=lambda: os.environ.get("BENCH_KEEP") == "1")
    strict: bool = field(default_factory=lambda: os.environ.get("BENCH_STRICT") == "1")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_per_second(times: Sequence[float]) -> int:
    """The most calls that arrived in any sliding one-second window [t, t + 1)."""
    ordered = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


@dataclass
class AckRow:
    kind: str  # "command" or "approve"
    server: str  # "bot" or "baseline"
    result: load.Result
    background: str = ""  # what the bot got done behind the acks during the run


@dataclass
class RateRow:
    scenario: str
    approvals: int
    creates: int
    seconds: float
    per_process: dict[str, int]
    total: int
    all_calls_per_process: dict[str, int]
    all_calls_total: int
    ack_errors: int


class Bench:
    def __init__(self, knobs: Knobs, standins: Standins, work: Path):
        self.k = knobs
        self.st = standins
        self.work = work
        self.policy_file = work / "policy.yaml"
        self.policy_file.write_text(POLICY)
        self.acks: list[AckRow] = []
        self.cloud: list[dict[str, object]] = []
        self.rates: list[RateRow] = []
        self.starts: list[tuple[str, float]] = []
        self.rss: list[tuple[str, dict[str, int | None]]] = []
        self.store_growth: list[tuple[str, str, int, int, int]] = []
        self.growth: list[dict[str, object]] = []
        self.errors: list[tuple[str, int, int]] = []  # phase, errors, non-200
        self.notes: list[str] = []
        self.servers: list[Server] = []
        self.postgres: str | None = None

    # ------------------------------------------------------------ plumbing

    def bot_env(self, db: Database, secret_id: str = SECRET_A) -> dict[str, str]:
        return clean_env(
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=self.st.slack_url,
            TENCENTCLOUD_SECRET_ID=secret_id,
            TENCENTCLOUD_SECRET_KEY=KEYS[secret_id],
            DBBRAIN_ENDPOINT=self.st.dbbrain_endpoint,
            POLICY_FILE=str(self.policy_file),
            DATABASE_URL=db.url,
            HOST="127.0.0.1",
            LOG_LEVEL="INFO",
            DOTENV_PATH=str(self.work / "no.env"),
        )

    def start(self, name: str, module: str, env: dict[str, str], label: str) -> Server:
        server = Server(name, module, env, self.work / f"{name}.log")
        self.servers.append(server)
        server.start()
        self.starts.append((label, server.startup))
        log(f"{name} up in {server.startup:.2f}s ({label})")
        return server

    def start_bot(self, db: Database, label: str, secret_id: str = SECRET_A) -> Server:
        return self.start(f"bot-{len(self.servers)}", "bot", self.bot_env(db, secret_id), label)

    def finish(self, server: Server, phase: str, graceful: bool = False, record: bool = True):
        """Read the peak RSS, then stop (SIGTERM, drains) or kill (SIGKILL, no drain)."""
        if record:
            self.rss.append((phase, server.peak_rss()))
        if graceful:
            server.stop()
        else:
            server.kill()
        logged = server.log_path.read_text(errors="replace")
        problems = logged.count("level=ERROR") + logged.count("Traceback")
        if problems:
            lines = logged.splitlines()
            first = next((i for i, line in enumerate(lines) if "level=ERROR" in line), None)
            # The error line, and the last line of its traceback (the exception) if it has one.
            shown = [] if first is None else [lines[first][:200]]
            if first is not None:
                follow = [t for t in lines[first + 1 : first + 60] if t and not t[0].isspace()]
                shown += [t[:200] for t in follow[1:2] if "level=" not in t]
            self.notes.append(
                f"{phase}: the server log has {problems} ERROR/Traceback line(s) "
                f"({server.log_path.name}); first: `{' … '.join(shown) or '?'}`."
            )

    def run(self, server: Server, prepared: list[load.Prepared], concurrency: int, phase: str):
        pids = {"server": server.worker_pid, "stand-ins": self.st.pid, "client": os.getpid()}
        if server.work_pid is not None:  # the bare Bolt baseline has none
            pids["work"] = server.work_pid
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        busy_before, total_before = machine_busy()
        with self.profiling(server, phase):
            result = load.run("127.0.0.1", server.port, prepared, concurrency)
        result.cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        busy, total = machine_busy()
        result.cpu["machine"] = (busy - busy_before) / max(total - total_before, 1e-9)
        self.errors.append((phase, result.errors, result.non_200))
        if result.errors or result.non_200:
            self.notes.append(
                f"{phase}: {result.errors} error(s), statuses {dict(result.statuses)}"
                + (f", first: {result.first_error}" if result.first_error else "")
            )
        return result

    @contextlib.contextmanager
    def profiling(self, server: Server, phase: str):  # type: ignore[no-untyped-def]
        """py-spy on the server's worker while a timed run lasts (BENCH_PROFILE)."""
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        worker = server.worker_pid
        if self.k.profile is None or "warm-up" in phase or spy is None or worker is None:
            yield
            return
        self.k.profile.mkdir(parents=True, exist_ok=True)
        name = "".join(ch if ch.isalnum() else "-" for ch in f"{server.name}-{phase}")
        rate = os.environ.get("BENCH_PROFILE_RATE", "200")
        command = [spy, "record", "-p", str(worker), "-f", "raw", "-r", rate, "--nonblocking"]
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

    @staticmethod
    def commands(n: int) -> list[load.Prepared]:
        return [
            load.command(
                SIGNING_SECRET, command_text(f"cdb-{uuid.uuid4().hex[:14]}"), REQUESTER, CHANNEL
            )
            for _ in range(n)
        ]

    @staticmethod
    def clicks(pending: Sequence[Pending]) -> list[load.Prepared]:
        return [
            load.click(SIGNING_SECRET, "approve", p.request_id, APPROVER, p.channel, p.ts)
            for p in pending
        ]

    def settle(self, what: str, ok: bool) -> None:
        if not ok:
            self.notes.append(f"{what}: timed out waiting for the bot.")
            log(f"timed out: {what}")

    def filing_wait(self, n: int) -> float:
        """Filing reads a preview through the 20/s DBbrain limit: allow for that, and more."""
        return 30.0 + n / RATE_LIMIT * 2

    # ------------------------------------------------------------ acks, ours and bare Bolt's

    def ack_runs(self) -> None:
        """Ours and the bare Bolt app's, in rounds that alternate between the two, so a busy
        moment of the shared machine falls on both; each level's requests are split across
        the rounds and their latencies pooled."""
        log("acks: bare Bolt app and the bot, alternating")
        env = clean_env(
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=self.st.slack_url,
            HOST="127.0.0.1",
            LOG_LEVEL="INFO",
        )
        base = self.start("baseline", "bench.baseline", env, "baseline (bare Bolt app)")
        fake = [
            Pending(i, "cdb-none", CHANNEL, f"1900000000.{i:06d}") for i in range(self.k.requests)
        ]
        self.run(base, self.commands(self.k.warmup), 5, "baseline warm-up")
        self.run(base, self.clicks(fake[: self.k.warmup]), 5, "baseline warm-up")
        db = Database.sqlite(self.work, "acks")
        rounds = max(1, self.k.rounds)
        runs: dict[tuple[str, str, int], list[load.Result]] = {}
        done: dict[tuple[str, int], int] = {}
        for r in range(rounds):
            last = r == rounds - 1
            for level in self.k.levels:
                for kind in ("command", "approve"):
                    n = len(range(r, self.k.requests, rounds))  # this round's share
                    theirs = self.commands(n) if kind == "command" else self.clicks(fake[:n])
                    runs.setdefault((kind, "baseline", level), []).append(
                        self.run(base, theirs, level, f"baseline {kind} c={level}")
                    )
                    result, got = self.bot_run(db, kind, level, n, last)
                    runs.setdefault((kind, "bot", level), []).append(result)
                    done[(kind, level)] = done.get((kind, level), 0) + got
        self.finish(base, "baseline, after all levels", graceful=True)
        self.st.reset()
        for (kind, server, level), parts in runs.items():
            pooled = load.merge(parts)
            background = ""
            if server == "bot":
                noun = "cards posted" if kind == "command" else "CreateKillTask sent"
                background = f"{done[(kind, level)]:,} of {pooled.requests:,} {noun}"
            self.acks.append(AckRow(kind, server, pooled, background))
            log(f"{server} {kind} c={level}: p99 {ms(pooled.pct(99))} ms, {cpu_text(pooled)}")

    def bot_run(
        self, db: Database, kind: str, level: int, n: int, last: bool
    ) -> tuple[load.Result, int]:
        """One timed run on a freshly started bot; returns it and how much work got done."""
        warm = self.k.warmup
        if kind == "command":
            bot = self.start_bot(db, "SQLite, restarted after SIGKILL")
            self.run(bot, self.commands(warm), 5, "bot warm-up")
            self.settle("command warm-up", self.st.wait_count("chat.postEphemeral", warm, 60))
            result = self.run(bot, self.commands(n), level, f"bot command c={level}")
            got = len(self.st.cards()) - warm
        else:
            pending = db.seed_pending(n + warm, CHANNEL, REQUESTER, f"a{level}x")
            rows = db.count_requests()
            bot = self.start_bot(db, f"SQLite, {rows:,} rows, restarted after SIGKILL")
            self.run(bot, self.clicks(pending[:warm]), 5, "bot warm-up")
            self.settle("approve warm-up", self.st.wait_creates(warm, 60))
            result = self.run(bot, self.clicks(pending[warm:]), level, f"bot approve c={level}")
            got = sum(c.action == "CreateKillTask" for c in self.st.cloud_calls()) - warm
        noun = "commands" if kind == "command" else "approvals"
        self.finish(bot, f"bot, after {self.k.requests:,} {noun} at c={level}", record=last)
        self.st.reset()
        return result, got

    # ------------------------------------------------------------ approval to cloud

    def approval_to_cloud(self) -> None:
        log("approval to cloud")
        db = Database.sqlite(self.work, "cloud")
        db.create_schema()
        k, warm = self.k.cloud_samples, self.k.warmup
        pending = db.seed_pending(2 * k + warm, CHANNEL, REQUESTER, "c")
        bot = self.start_bot(db, "SQLite, existing schema")
        self.run(bot, self.clicks(pending[:warm]), 1, "approval-to-cloud warm-up")
        self.settle("approval warm-up", self.st.wait_creates(warm, 60))
        time.sleep(1.1)  # the warm-up's DBbrain calls leave the limiter's one-second window
        for n, delay in enumerate((0.0, 0.2)):
            self.st.set_delay(delay)
            timed = self.time_approvals(bot, pending[warm + n * k : warm + (n + 1) * k], delay)
            self.errors.append((f"approval to cloud, delay {delay}s", timed["errors"], 0))
            self.cloud.append(timed)
            log(f"approval to cloud, delay {delay}s: p50 {ms(timed['p50'])} ms")
        self.st.set_delay(0.0)
        time.sleep(1.0)  # the last approval's card update and thread reply
        self.finish(bot, "bot, after the approval-to-cloud runs", graceful=True)
        self.st.reset()

    def time_approvals(self, bot: Server, pending: Sequence[Pending], delay: float) -> dict:
        """Approve one by one on an idle bot; time each click to its CreateKillTask's arrival."""
        conn = http.client.HTTPConnection("127.0.0.1", bot.port, timeout=30)
        latencies, acks, errors = [], [], 0
        why: list[str] = []
        for p in pending:
            item = self.clicks([p])[0]
            sent = time.time()
            began = time.perf_counter()
            try:
                conn.request("POST", load.PATH, item.body, item.headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                errors += 1
                why.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                continue
            acks.append(time.perf_counter() - began)
            if response.status != 200:
                errors += 1
                why.append(f"HTTP {response.status}")
                continue
            call = self.st.wait_create_of(p.instance, 10 + 4 * delay)
            if call is None:
                errors += 1
                why.append(f"no CreateKillTask for request #{p.request_id} in time")
            else:
                latencies.append(call.received_at - sent)
            time.sleep(max(0.0, sent + CLOUD_PACE - time.time()))
        conn.close()
        if errors:
            self.notes.append(
                f"approvals timed to DBbrain on {bot.name}: {errors} failed; first: {why[0]}"
            )
        return {
            "delay": delay,
            "samples": len(latencies),
            "errors": errors,
            "latencies": latencies,
            "p50": load.percentile(latencies, 50),
            "p99": load.percentile(latencies, 99),
            "max": load.percentile(latencies, 100),
            "ack_p50": load.percentile(acks, 50),
        }

    # ------------------------------------------------------------ rate limit

    def rate_limit(self) -> None:
        log("rate limit: one process (SQLite)")
        db = Database.sqlite(self.work, "rate")
        bot = self.start_bot(db, "SQLite, new file (migrates)")
        self.burst(db, [bot], "one process, SQLite")
        self.finish(bot, "bot, after the one-process burst", graceful=True)
        self.st.reset()
        if self.postgres is None:
            return
        log("rate limit: two processes (PostgreSQL)")
        db = Database.postgres(self.postgres)
        try:
            db.create_schema()
            bots = [
                self.start_bot(db, "PostgreSQL, existing schema (replica A)", SECRET_A),
                self.start_bot(db, "PostgreSQL, existing schema (replica B)", SECRET_B),
            ]
            self.burst(db, bots, "two processes, one PostgreSQL")
            for name, bot in zip("AB", bots, strict=True):
                self.finish(bot, f"replica {name}, after the two-process burst", graceful=True)
        finally:
            self.st.reset()
            db.drop()

    def burst(self, db: Database, bots: list[Server], scenario: str) -> None:
        """File `burst` requests (untimed), then approve them all at once, split over bots."""
        b = self.k.burst
        before = db.size()
        shares = [b // len(bots) + (i < b % len(bots)) for i in range(len(bots))]
        for bot, share in zip(bots, shares, strict=True):
            self.run(bot, self.commands(share), 10, f"{scenario}: filing")
        self.settle(
            f"{scenario}: filing",
            self.st.wait_count("chat.postEphemeral", b, self.filing_wait(b)),
        )
        filed = db.size()
        self.store_growth.append(
            (db.kind, "filed (pending, card and preview shown)", b, before, filed)
        )
        cards = [Pending(c.request_id, c.instance, c.channel, c.ts) for c in self.st.cards()]
        self.st.reset()  # count only what the approvals cause
        results: list[load.Result] = []

        def approve(bot: Server, part: list[Pending]) -> None:
            results.append(self.run(bot, self.clicks(part), 50, f"{scenario}: approvals"))

        parts = [cards[i :: len(bots)] for i in range(len(bots))]
        began = time.time()
        threads = [
            threading.Thread(target=approve, args=(bot, part))
            for bot, part in zip(bots, parts, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Each approval makes two DBbrain calls (preview, then CreateKillTask).
        ok = self.st.wait_creates(len(cards), 60 + 2 * len(cards) / RATE_LIMIT * 2)
        self.settle(f"{scenario}: CreateKillTask", ok)
        calls = self.st.cloud_calls()
        creates = [c for c in calls if c.action == "CreateKillTask"]
        seconds = max((c.received_at for c in creates), default=began) - began
        per_process = {
            secret: peak_per_second([c.received_at for c in creates if c.secret_id == secret])
            for secret in sorted({c.secret_id or "?" for c in creates})
        }
        self.rates.append(
            RateRow(
                scenario,
                len(cards),
                len(creates),
                seconds,
                per_process,
                peak_per_second([c.received_at for c in creates]),
                {
                    secret: peak_per_second([c.received_at for c in calls if c.secret_id == secret])
                    for secret in sorted({c.secret_id or "?" for c in calls})
                },
                peak_per_second([c.received_at for c in calls]),
                sum(r.errors + r.non_200 for r in results),
            )
        )
        log(f"{scenario}: peak {self.rates[-1].total}/s over {seconds:.1f}s")
        self.settle(f"{scenario}: running", self.wait_running(db, len(cards), 60))
        self.store_growth.append(
            (db.kind, "approved, CreateKillTask sent, running", len(cards), filed, db.size())
        )

    @staticmethod
    def wait_running(db: Database, n: int, timeout: float) -> bool:
        engine = db.engine()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    running = conn.execute(
                        text("SELECT count(*) FROM kill_requests WHERE state = 'running'")
                    ).scalar_one()
                if running >= n:
                    return True
                time.sleep(0.2)
            return False
        finally:
            engine.dispose()

    # ------------------------------------------------------------ growth

    def growth_runs(self) -> None:
        """Each history size gets its own database, seeded once; the sizes are then measured in
        turn, round after round, so what else the machine does falls on all of them alike."""
        kinds = ["SQLite"] + (["PostgreSQL"] if self.postgres else [])
        rounds = max(1, self.k.growth_rounds)
        samples = self.k.growth_cloud_samples
        per_round = max(1, self.k.growth_requests // rounds)
        for kind in kinds:
            dbs: dict[int, Database] = {}
            pending: dict[int, list[Pending]] = {}
            found: dict[int, dict[str, list]] = {}
            try:
                for past in self.k.growth:
                    log(f"growth: seeding {kind} with {past:,} past requests")
                    db = (
                        Database.sqlite(self.work, f"growth{past}")
                        if kind == "SQLite"
                        else Database.postgres(self.postgres or "")
                    )
                    dbs[past] = db
                    db.create_schema()
                    db.seed_past(past)
                    pending[past] = db.seed_pending(
                        rounds * (per_round + samples), CHANNEL, REQUESTER, "g"
                    )
                    if db.schema:
                        engine = db.engine()
                        with engine.begin() as conn:
                            conn.execute(text("ANALYZE"))  # as autovacuum would have by now
                        engine.dispose()
                    found[past] = {"command": [], "approve": [], "cloud": []}
                    found[past]["queries"] = [store_timings(db.url, pending[past][-1])]
                for turn in range(rounds):
                    for past, db in dbs.items():
                        self.growth_round(kind, past, db, turn, pending[past], found[past])
                for past in dbs:
                    commands = load.merge(found[past]["command"])
                    clicks = load.merge(found[past]["approve"])
                    cloud = [t for timed in found[past]["cloud"] for t in timed["latencies"]]
                    self.growth.append(
                        {
                            "kind": kind,
                            "past": past,
                            "command": commands,
                            "approve": clicks,
                            "cloud": cloud,
                            "queries": found[past]["queries"][0],
                            "rounds": found[past],
                        }
                    )
                    log(
                        f"growth {kind} {past}: command p99 {ms(commands.pct(99))} ms, "
                        f"approve p99 {ms(clicks.pct(99))} ms, approval to cloud p50 "
                        f"{ms(load.percentile(cloud, 50))} ms"
                    )
            finally:
                for db in dbs.values():
                    db.drop()

    def growth_round(
        self, kind: str, past: int, db: Database, turn: int, pending: list[Pending], found: dict
    ) -> None:
        c, warm, samples = self.k.growth_concurrency, self.k.warmup, self.k.growth_cloud_samples
        per_round = max(1, self.k.growth_requests // max(1, self.k.growth_rounds))
        label = f"{kind}, {past:,} past requests"
        phase = f"growth {kind} {past:,} round {turn + 1}"
        bot = self.start_bot(db, label)
        self.run(bot, self.commands(warm), 5, "growth warm-up")
        self.settle("growth warm-up", self.st.wait_count("chat.postEphemeral", warm, 60))
        found["command"].append(self.run(bot, self.commands(per_round), c, f"{phase} commands"))
        self.finish(bot, f"bot, {label}, commands")
        self.st.reset()
        mine = pending[turn * (per_round + samples) : (turn + 1) * (per_round + samples)]
        bot = self.start_bot(db, f"{label}, after SIGKILL")
        # Approvals one at a time on the idle bot first: timed, and the warm-up too.
        timed = self.time_approvals(bot, mine[:samples], 0.0)
        self.errors.append((f"{phase} approval to cloud", timed["errors"], 0))
        found["cloud"].append(timed)
        found["approve"].append(self.run(bot, self.clicks(mine[samples:]), c, f"{phase} clicks"))
        self.finish(bot, f"bot, {label}, approvals")
        self.st.reset()

    # ------------------------------------------------------------ all of it

    def check_postgres(self) -> None:
        try:
            engine = create_engine(self.k.postgres_url, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            self.postgres = self.k.postgres_url
        except Exception as exc:
            self.notes.append(
                f"PostgreSQL at {self.k.postgres_url} is not reachable ({type(exc).__name__}): "
                "the two-process rate limit and the PostgreSQL growth runs were skipped."
            )
            log(f"PostgreSQL not reachable ({type(exc).__name__}); skipping its parts")

    def run_all(self) -> None:
        self.check_postgres()
        steps = {
            "acks": self.ack_runs,
            "cloud": self.approval_to_cloud,
            "rate": self.rate_limit,
            "growth": self.growth_runs,
        }
        for name, step in steps.items():
            if name in self.k.only:
                step()

    def kill_all(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.kill()


# ---------------------------------------------------------------- the report


def cpu_text(r: load.Result) -> str:
    if not r.cpu:
        return ""
    c = r.cpu
    work = f"{c['work']:.1f}" if "work" in c else "–"
    return (
        f"{c['server']:.1f} / {work} / {c['stand-ins']:.1f} / {c['client']:.1f} "
        f"({c['machine']:.0%})"
    )


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' with uncommitted changes' if dirty else ''}" if head else "unknown"


def render(b: Bench, began: datetime.datetime, took: float, loads: tuple) -> tuple[str, bool]:
    k = b.k
    top = max(k.levels)
    base = {(r.kind, r.result.concurrency): r.result for r in b.acks if r.server == "baseline"}
    ours = {(r.kind, r.result.concurrency): r.result for r in b.acks if r.server == "bot"}
    targets: list[tuple[str, str, bool | None]] = []

    for kind in ("command", "approve"):
        mine, theirs = ours.get((kind, top)), base.get((kind, top))
        if mine and theirs:
            factor = mine.pct(99) / theirs.pct(99)
            targets.append(
                (
                    f"{kind} ack p99 at c={top} ≤ {TARGETS['ack_ratio']}× bare Bolt",
                    f"{factor:.2f}× ({ms(mine.pct(99))} vs {ms(theirs.pct(99))} ms)",
                    factor <= TARGETS["ack_ratio"],
                )
            )
            targets.append(
                (
                    f"{kind} ack p99 at c={top} < {TARGETS['ack_p99'] * 1000:.0f} ms",
                    f"{ms(mine.pct(99))} ms",
                    mine.pct(99) < TARGETS["ack_p99"],
                )
            )
    instant = next((c for c in b.cloud if c["delay"] == 0.0), None)
    targets.append(
        (
            f"approval to CreateKillTask p50 < {TARGETS['cloud_p50'] * 1000:.0f} ms (instant)",
            f"{ms(instant['p50'])} ms" if instant else "–",  # type: ignore[arg-type]
            None if instant is None else instant["p50"] < TARGETS["cloud_p50"],  # type: ignore[operator]
        )
    )
    total_errors = sum(e + n for _, e, n in b.errors)
    targets.append(("zero errors and non-200s", f"{total_errors}", total_errors == 0))
    worst_start = max((s for _, s in b.starts), default=float("nan"))
    worst_label = max(b.starts, key=lambda s: s[1])[0] if b.starts else "–"
    targets.append(
        (
            f"start-up < {TARGETS['startup']} s (every start)",
            f"worst {worst_start:.2f} s ({worst_label})",
            worst_start < TARGETS["startup"],
        )
    )
    bot_rss = [s for phase, s in b.rss if not phase.startswith("baseline")]
    worker = max((s["worker"] or 0 for s in bot_rss), default=0)
    work = max((s.get("work") or 0 for s in bot_rss), default=0)
    master = max((s["master"] or 0 for s in bot_rss), default=0)
    targets.append(
        (
            f"peak RSS < {TARGETS['rss_mb']:.0f} MB (server worker; work process; master)",
            f"{mb(worker)} MB; {mb(work)} MB; {mb(master)} MB",
            max(worker, work, master) / 1024 < TARGETS["rss_mb"],
        )
    )
    for row in b.rates:
        worst = max([row.total, *row.per_process.values()])
        targets.append(
            (
                f"CreateKillTask ≤ {RATE_LIMIT}/s, {row.scenario}",
                f"peak {worst}/s ({row.creates} of {row.approvals} created)",
                worst <= RATE_LIMIT and row.creates == row.approvals,
            )
        )
    for kind in ("SQLite", "PostgreSQL"):
        runs = sorted((g for g in b.growth if g["kind"] == kind), key=lambda g: g["past"])
        if len(runs) < 2:
            continue
        first, last = runs[0], runs[-1]
        for what in ("command", "approve"):
            p0, p1 = first[what].pct(99), last[what].pct(99)  # type: ignore[attr-defined]
            change = p1 / p0 - 1
            targets.append(
                (
                    f"{what} ack p99 flat (±{TARGETS['growth']:.0%}), {kind} "
                    f"{first['past']:,} → {last['past']:,} past",
                    f"{ms(p0)} → {ms(p1)} ms ({change:+.0%})",
                    abs(change) <= TARGETS["growth"],
                )
            )

    out: list[str] = []
    add = out.append
    add("# Benchmarks")
    add("")
    add(
        f"Run {began:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs ({platform.machine()}, "
        f"{platform.system()} {platform.release()}), Python {platform.python_version()}, "
        f"commit {git_commit()}; took {took / 60:.1f} min. Load average before/after: "
        f"{loads[0]:.2f} / {loads[1]:.2f}. Made by `make bench` (`python -m bench`); knobs: "
        f"{k.requests:,} requests per level in {k.rounds} alternating rounds, levels "
        f"{', '.join(map(str, k.levels))}, growth "
        f"{', '.join(f'{g:,}' for g in k.growth)} past requests with {k.growth_requests:,} "
        f"requests at c={k.growth_concurrency}, {k.cloud_samples} approvals timed to DBbrain "
        f"per delay, bursts of {k.burst} approvals."
    )
    add("")
    add("## Targets")
    add("")
    add(table(["target", "measured", "verdict"], [(t, m, verdict(v)) for t, m, v in targets]))
    add("")
    add("## Ack latency")
    add("")
    add(
        "Signed `/killtask <instance> …` commands (each valid: it files a request and posts a "
        "card) and signed Approve clicks, closed loop at each concurrency. Milliseconds; the "
        "ratios divide ours by the bare Bolt app's at the same level."
    )
    add("")
    rows = []
    for kind in ("command", "approve"):
        for level in k.levels:
            for server, results in (("bare Bolt", base), ("killtask", ours)):
                r = results.get((kind, level))
                if r is None:
                    continue
                theirs = base.get((kind, level))
                background = next(
                    (a.background for a in b.acks if a.result is r and a.server == "bot"), ""
                )
                rows.append(
                    (
                        kind,
                        level,
                        server,
                        f"{r.requests:,}",
                        r.errors,
                        r.non_200,
                        f"{r.throughput:,.0f}",
                        ms(r.pct(50)),
                        ms(r.pct(95)),
                        ms(r.pct(99)),
                        ms(r.pct(100)),
                        ratio(r.pct(50), theirs.pct(50)) if server == "killtask" and theirs else "",
                        ratio(r.pct(99), theirs.pct(99)) if server == "killtask" and theirs else "",
                        cpu_text(r),
                        background,
                    )
                )
    add(
        table(
            [
                "request",
                "c",
                "server",
                "n",
                "errors",
                "non-200",
                "req/s",
                "p50",
                "p95",
                "p99",
                "max",
                "p50 ÷ bare",
                "p99 ÷ bare",
                "CPU s: server / work process / stand-ins / client (machine busy)",
                "bot's work done meanwhile",
            ],
            rows,
        )
    )
    add("")
    add("## Approval to cloud")
    add("")
    add(
        "From the Approve click leaving the client to CreateKillTask arriving at the DBbrain "
        f"emulator; one approval every {CLOUD_PACE * 1000:.0f} ms or when the previous one "
        "arrived, whichever is later, so the rate limit never delays one. Milliseconds."
    )
    add("")
    add(
        table(
            ["emulator delay", "samples", "errors", "p50", "p99", "max", "click ack p50"],
            [
                (
                    f"{c['delay'] * 1000:.0f} ms",  # type: ignore[operator]
                    c["samples"],
                    c["errors"],
                    ms(c["p50"]),  # type: ignore[arg-type]
                    ms(c["p99"]),  # type: ignore[arg-type]
                    ms(c["max"]),  # type: ignore[arg-type]
                    ms(c["ack_p50"]),  # type: ignore[arg-type]
                )
                for c in b.cloud
            ],
        )
    )
    add("")
    add("## Rate limit held")
    add("")
    add(
        f"{k.burst} requests filed (untimed), then all approved at once (50 concurrent clicks "
        "per process). Peak = the most calls the emulator received in any sliding one-second "
        "window; per process = per CAM key (each replica has its own). The bot's limiter "
        "counts every DBbrain call (the preview reads too), so the last two columns show what "
        "it governs."
    )
    add("")
    add(
        table(
            [
                "scenario",
                "approvals",
                "CreateKillTask received",
                "seconds to last",
                "peak/s per process",
                "peak/s total",
                "all DBbrain calls: peak/s per process",
                "… total",
                "click errors",
            ],
            [
                (
                    r.scenario,
                    r.approvals,
                    r.creates,
                    f"{r.seconds:.1f}",
                    ", ".join(f"{key}: {v}" for key, v in r.per_process.items()),
                    r.total,
                    ", ".join(f"{key}: {v}" for key, v in r.all_calls_per_process.items()),
                    r.all_calls_total,
                    r.ack_errors,
                )
                for r in b.rates
            ],
        )
    )
    add("")
    add("## Start-up")
    add("")
    add("Seconds from starting the process to the first 200 from `/healthz`.")
    add("")
    starts = [s for _, s in b.starts]
    add(table(["start", "seconds"], [(label, f"{s:.2f}") for label, s in b.starts]))
    add("")
    if starts:
        add(
            f"Median {statistics.median(starts):.2f} s, best {min(starts):.2f} s, worst "
            f"{max(starts):.2f} s over {len(starts)} starts."
        )
        add("")
    add("## Memory")
    add("")
    add(
        "Peak resident set (VmHWM of /proc/<pid>/status) of the gunicorn master, its worker "
        "and the work process, read after each load, before the process was stopped. MB."
    )
    add("")
    add(
        table(
            ["after", "master", "server worker", "work process"],
            [(phase, mb(s["master"]), mb(s["worker"]), mb(s.get("work"))) for phase, s in b.rss],
        )
    )
    add("")
    add("## Store growth")
    add("")
    add(
        "Bytes added per 1,000 requests: the SQLite file (WAL checkpointed first), or "
        "`pg_total_relation_size` summed over the schema's tables (indexes and TOAST included). "
        "Measured on the rate-limit runs' fresh databases."
    )
    add("")
    add(
        table(
            ["database", "step", "requests", "bytes before", "bytes after", "per 1,000 requests"],
            [
                (
                    kind,
                    step,
                    n,
                    f"{before:,}",
                    f"{after:,}",
                    f"{(after - before) * 1000 / n / 1024:,.0f} KB" if n else "–",
                )
                for kind, step, n, before, after in b.store_growth
            ],
        )
    )
    add("")
    add("## Growth of the history")
    add("")
    add(
        f"Ack latency with past requests already in the store: {k.growth_requests:,} commands, "
        f"then {k.growth_requests:,} Approve clicks on a restarted bot, at c="
        f"{k.growth_concurrency}, in {k.growth_rounds} rounds that take the sizes in turn (the "
        "percentiles pool the rounds). Before each round's clicks, "
        f"{k.growth_cloud_samples} approvals one at a time, timed from click to CreateKillTask. "
        "Milliseconds; change is p99 against no history. The p99 of each round on its own "
        "shows how much the same measurement moves on this machine from one minute to the "
        "next."
    )
    add("")
    grows = []
    for g in b.growth:
        zero = next((z for z in b.growth if z["kind"] == g["kind"] and z["past"] == 0), None)
        cells = [g["kind"], f"{g['past']:,}"]
        for what in ("command", "approve"):
            r = g[what]
            change = ""
            if zero is not None:
                change = f"{r.pct(99) / zero[what].pct(99) - 1:+.0%}"  # type: ignore[attr-defined]
            cells += [ms(r.pct(50)), ms(r.pct(99)), change]  # type: ignore[attr-defined]
        for what in ("command", "approve"):
            cells.append(" / ".join(ms(r.pct(99)) for r in g["rounds"][what]))  # type: ignore[index]
        cloud = g["cloud"]
        cells += [ms(load.percentile(cloud, 50)), ms(load.percentile(cloud, 100))]  # type: ignore[arg-type]
        grows.append(cells)
    add(
        table(
            [
                "database",
                "past requests",
                "command p50",
                "command p99",
                "change",
                "approve p50",
                "approve p99",
                "change",
                "command p99 by round",
                "approve p99 by round",
                "approval to cloud p50",
                "… max",
            ],
            grows,
        )
    )
    add("")
    if b.growth:
        names = list(b.growth[0]["queries"])  # type: ignore[arg-type]
        add(
            "The store calls behind a click, a filing and each tick (every `TICK_SECONDS`, "
            "5 s by default, in every replica), timed from the benchmark against the same "
            "databases before the bot ran: median of 20 calls, milliseconds."
        )
        add("")
        add(
            table(
                ["database", "past requests", *names],
                [
                    [
                        g["kind"],
                        f"{g['past']:,}",
                        *(ms(g["queries"].get(n)) for n in names),  # type: ignore[attr-defined]
                    ]
                    for g in b.growth
                ],
            )
        )
        add("")
    if FINDINGS.exists():  # kept by hand: what profiling found, and the numbers before and after
        add(FINDINGS.read_text().strip())
        add("")
    add("## How measured")
    add("")
    add(HOW)
    if b.notes:
        add("")
        add("## Notes from this run")
        add("")
        for note in b.notes:
            add(f"- {note}")
    add("")
    failed = any(v is False for _, _, v in targets)
    return "\n".join(out), failed


FINDINGS = Path(__file__).with_name("findings.md")

HOW = """\
- **Processes.** The real bot (`python -m bot`: gunicorn, gthread, 1 worker, 16 threads, and
  the work process `python -m bot work` that runs everything after the acks at nice 10) runs
  in its own process group, configured only through its environment, with SQLite unless said
  otherwise; `/healthz` answers 200 only once the work process takes jobs. The fake Slack Web
  API and the DBbrain emulator (`standins/`) run together in a second process (`python -m
  bench.standins`), and the load generator in a third (this one), so they do not share an
  interpreter lock. All of it is on this machine, on 127.0.0.1; the machine is shared, so
  figures move with whatever else runs (see the load averages above).
- **Baseline.** `bench/baseline.py`: a bare Bolt app whose `/killtask` and buttons only call
  `ack()`, served through `bot.server` itself (same gunicorn options, WSGI adapter and routing,
  same 16-thread listener executor). Bolt acks from a listener thread and polls for the ack
  every 10 ms, so about 10 ms is the floor for both.
- **Rounds.** Each level's requests are split into rounds (3 unless said otherwise), and the
  bare Bolt app and the bot take turns, round by round, so a busy moment of the shared machine
  falls on both; a row pools the latencies of all its rounds.
- **Load.** Closed loop: N threads, each with one persistent HTTP/1.1 connection
  (`http.client`), each sending its next request when the previous answer is read. Bodies are
  built and signed (Slack's v0 HMAC) before the clock starts. Latency is from sending the
  request to reading the whole answer. Every request is valid: commands use a new instance id
  each, clicks approve a pending request of their own. Errors are connection failures and
  timeouts; any status but 200 is counted apart. The CPU column is CPU time used while the run
  lasted by the server's worker, the bot's work process, the stand-ins and the load generator,
  and how busy the whole machine was (all CPUs, anything running).
- **Background work.** Each command files a request, posts its card, reads a live preview
  (DescribeMySqlProcessList) and answers privately; each approval reads the preview again and
  calls CreateKillTask. Both DBbrain calls go through the bot's 20-per-second limit, so filing
  and approving drain at most 20 (10) a second while acks arrive far faster: a closed loop
  builds a backlog that would take minutes to drain. So after each timed run the bot is killed
  with SIGKILL (its process group; only the acks are being measured) and started again for the
  next run; the last column of the ack table says how much of the work it got done meanwhile.
  The emulator's process lists are empty, so previews are cheap.
- **Pending requests for clicks** are written straight into the bot's tables (`bench/seed.py`,
  with the bot's own schema, spec parser and tables), as filed and carded requests, because
  filing 6,000 through the bot would take five minutes at 20 a second. The rate-limit runs file
  theirs through the bot.
- **Approval to cloud** uses `time.time()` on both sides (same machine): the click's send
  time in the load generator, the emulator's `received_at` for CreateKillTask.
- **Rate limit.** Requests filed through the bot, then approved at once; the emulator records
  each call's arrival and CAM key, from which the peaks are computed. The two-process run uses
  two replicas on one PostgreSQL schema, each with its own CAM key, half the clicks each.
- **Start-up** is timed from `Popen` to the first 200 from `/healthz` (polled every 5 ms).
  **Memory** is VmHWM of the master (`python -m bot`) and of its two children: the gunicorn
  worker and the work process.
- **Growth.** Past requests (states finished, expired, rejected, stopped, failed; 50 channels;
  two audit rows each) are inserted with SQL before the bot starts; PostgreSQL is ANALYZEd
  after, as autovacuum would have done. Each size has its own database; the sizes are measured
  in turn, in rounds, so a busy moment of the machine does not land on one size only. The acks
  themselves never touch the store (the bot acks before any work), so history could only show
  through the work behind them; the approval-to-cloud samples and the store-call timings look
  at that work directly.
- Percentiles are nearest-rank over every request of the run (no warm-up requests: those go
  first and are not timed).
"""


def main() -> int:
    knobs = Knobs()
    began = datetime.datetime.now(datetime.UTC)
    started = time.monotonic()
    loads_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="killtask-bench-"))
    log(f"working folder {work}")
    bench: Bench | None = None
    ok = False
    try:
        with (
            (work / "standins.log").open("w") as standins_log,
            Standins(cwd=str(ROOT), env=clean_env(), log=standins_log) as standins,
        ):
            bench = Bench(knobs, standins, work)
            try:
                bench.run_all()
            finally:
                bench.kill_all()
        took = time.monotonic() - started
        markdown, failed = render(bench, began, took, (loads_before, os.getloadavg()[0]))
        print(markdown)
        knobs.out.parent.mkdir(parents=True, exist_ok=True)
        knobs.out.write_text(markdown)
        log(f"wrote {knobs.out}")
        ok = True
        if bench.notes:
            log(f"see the notes; logs kept in {work}")
        return 1 if failed and knobs.strict else 0
    finally:
        if knobs.keep or not ok or (bench is not None and bench.notes):
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
