"""The DBbrain emulator's kill task and KillMySqlThreads really kill sessions.

Driven through the real Tencent SDK, against simulated rows and against the MariaDB/MySQL server
at TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306/test; its account needs PROCESS, CREATE
USER and the right to kill other accounts' sessions). Without that server the MySQL tests skip,
unless REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.dbbrain.v20210527 import dbbrain_client, models

from standins.dbbrain import DbbrainEmulator
from standins.sessions import MySQLSessions, SimulatedSessions, parse_mysql_url

if os.environ.get("REQUIRE_SERVICES") == "1":
    import pymysql
else:
    pymysql = pytest.importorskip("pymysql", reason="PyMySQL is not installed")

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
DEFAULT_URL = "mysql://root@127.0.0.1:3306/test"
INSTANCE = "cdb-rehearsal"
INTERVAL = 0.2  # kill task sweep interval for these tests
SLEEP_SQL = "SELECT SLEEP(30)"

T = TypeVar("T")
Client = dbbrain_client.DbbrainClient
Connection = Any  # pymysql.Connection; the module may be a stand-in from importorskip


def wait_until(check: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return result


def make_client(emulator: DbbrainEmulator, monkeypatch: pytest.MonkeyPatch) -> Client:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    http = HttpProfile(protocol="http", endpoint=emulator.netloc, reqTimeout=10)
    cred = credential.Credential("AKIDEMULATOR", "emulator-secret")
    return dbbrain_client.DbbrainClient(cred, "ap-guangzhou", ClientProfile(httpProfile=http))


def call(client: Client, action: str, **params: Any) -> Any:
    request = getattr(models, f"{action}Request")()
    request._deserialize({"InstanceId": INSTANCE, **params})
    return getattr(client, action)(request)


def process_ids(client: Client, **filters: Any) -> set[int]:
    rows = call(client, "DescribeMySqlProcessList", Limit=1000, **filters).ProcessList
    return {int(row.ID) for row in rows}


# --- simulated sessions: no server needed ---------------------------------------------------
FIELDS = ("ID", "User", "Host", "DB", "Command", "Time", "Info")
SIMULATED = [
    (1, "app", "10.0.0.5:5000", "shop", "Query", 120, "SELECT * FROM orders"),  # matches
    (2, "app", "10.0.0.5:5001", "crm", "QUERY", 60, "  SELECT 1"),  # matches: case, spaces
    (3, "app", "10.0.0.5:5002", "shop", "Query", 59, "SELECT * FROM orders"),  # too young
    (4, "app", "10.0.0.50:5003", "shop", "Query", 120, "SELECT * FROM orders"),  # other host
    (5, "app", "10.0.0.5:5004", "shop", "Sleep", 900, None),  # other command
    (6, "app", "10.0.0.5:5005", "dw", "Query", 120, "SELECT * FROM orders"),  # other db
    (7, "etl", "10.0.0.5:5006", "shop", "Query", 120, "SELECT * FROM orders"),  # other user
    (8, "app", "10.0.0.5:5007", "shop", "Query", 120, "select * from orders"),  # Info's case
    (9, "app", "10.0.0.5:5008", "shop", "Daemon", 120, "SELECT * FROM orders"),  # system
]


@pytest.fixture
def simulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[DbbrainEmulator, Client]]:
    rows = [dict(zip(FIELDS, row, strict=True)) for row in SIMULATED]
    backends = {INSTANCE: SimulatedSessions(rows)}
    with DbbrainEmulator(backends=backends, kill_interval=INTERVAL) as emu:
        yield emu, make_client(emu, monkeypatch)


def test_kill_task_removes_only_matching_simulated_rows(simulated) -> None:
    emu, client = simulated
    filters = {"User": "app", "Host": "10.0.0.5", "DB": "shop,crm", "Command": "query"}
    resp = call(client, "CreateKillTask", Duration=60, Info="SELECT", Time=60, **filters)
    assert resp.Status == 1

    wait_until(lambda: {1, 2} <= set(emu.tasks[0]["Killed"]), "rows 1 and 2 to be killed")
    emu.stop()  # ends the task's thread, so nothing more can be killed behind our back
    assert sorted(emu.tasks[0]["Killed"]) == [1, 2]
    assert [row["ID"] for row in emu.backends[INSTANCE].list()] == [str(i) for i in range(3, 10)]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"Host": "10.0.0.5:5000"}, "InvalidParameterValue"),
        ({"DB": "shop,,crm"}, "InvalidParameterValue"),
        ({"User": " "}, "InvalidParameterValue"),
        ({"Time": -1}, "InvalidParameterValue"),
        ({"InstanceId": "cdb-unknown"}, "ResourceNotFound"),
    ],
)
def test_bad_kill_task_is_refused(simulated, params: dict[str, Any], code: str) -> None:
    emu, client = simulated
    with pytest.raises(TencentCloudSDKException) as info:
        call(client, "CreateKillTask", Duration=60, **params)
    assert info.value.code == code
    assert emu.tasks == []


# --- a real server --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server_url() -> str:
    url = os.environ.get("TEST_MYSQL_URL", DEFAULT_URL)
    try:
        pymysql.connect(**parse_mysql_url(url), connect_timeout=3).close()
    except (pymysql.err.Error, OSError) as e:
        reason = f"no MySQL/MariaDB server reachable at TEST_MYSQL_URL={url}: {e}"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture
def root(server_url: str) -> Iterator[Connection]:
    conn = pymysql.connect(**parse_mysql_url(server_url), autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def accounts(root: Connection) -> Iterator[dict[str, str]]:
    """Two throwaway accounts, app and batch: name -> password."""
    suffix = secrets.token_hex(3)
    users = {f"kt_app_{suffix}": secrets.token_hex(8), f"kt_batch_{suffix}": secrets.token_hex(8)}
    with root.cursor() as cur:
        for name, password in users.items():
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
            cur.execute("GRANT USAGE ON *.* TO %s@'%%'", (name,))
    yield users
    with root.cursor() as cur:
        for name in users:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (name,))


class Sleeper:
    """Runs SELECT SLEEP(30) on its connection in a thread and records how it ended."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self.id = conn, conn.thread_id()
        self.error: Exception | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.execute(SLEEP_SQL)
        except pymysql.err.Error as e:
            self.error = e
        finally:
            self.done.set()


@pytest.fixture
def sessions(
    server_url: str, root: Connection, accounts: dict[str, str]
) -> Iterator[Callable[[str], Connection]]:
    """open(user) -> a new connection; all are killed and closed at teardown."""
    args = parse_mysql_url(server_url)
    opened: list[Connection] = []

    def open_session(user: str) -> Connection:
        conn = pymysql.connect(
            host=args["host"], port=args["port"], user=user, password=accounts[user]
        )
        opened.append(conn)
        return conn

    yield open_session
    with root.cursor() as cur:
        for conn in opened:
            with contextlib.suppress(pymysql.err.Error):  # most are dead already
                cur.execute(f"KILL {int(conn.thread_id())}")  # also ends running sleepers
    for conn in opened:
        with contextlib.suppress(pymysql.err.Error):
            conn.close()


@pytest.fixture
def emulator(server_url: str) -> Iterator[DbbrainEmulator]:
    backends = {INSTANCE: MySQLSessions(server_url)}
    with DbbrainEmulator(backends=backends, kill_interval=INTERVAL) as emu:
        yield emu


@pytest.fixture
def client(emulator: DbbrainEmulator, monkeypatch: pytest.MonkeyPatch) -> Client:
    return make_client(emulator, monkeypatch)


def alive(conn: Connection) -> bool:
    try:
        conn.ping(reconnect=False)
    except pymysql.err.Error:
        return False
    return True


def test_kill_task_kills_matching_sessions_until_cancelled(emulator, client, accounts, sessions):
    app, batch = accounts
    app_idle, batch_idle = sessions(app), sessions(batch)
    app_busy = [Sleeper(sessions(app)), Sleeper(sessions(app))]
    batch_busy = Sleeper(sessions(batch))
    busy_ids = {s.id for s in [*app_busy, batch_busy]}
    wait_until(lambda: busy_ids <= process_ids(client, Info=SLEEP_SQL), "the sleepers to show")

    rows = call(client, "DescribeMySqlProcessList", User=app).ProcessList
    assert {int(r.ID) for r in rows} == {app_idle.thread_id(), *(s.id for s in app_busy)}
    idle = next(r for r in rows if int(r.ID) == app_idle.thread_id())
    assert (idle.Command, idle.Info) == ("Sleep", "")
    client_ip, _, port = idle.Host.rpartition(":")  # ip:port, like DBbrain's
    assert port.isdigit()

    filters = {"User": app, "Host": client_ip, "Command": "Query"}
    assert call(client, "CreateKillTask", Duration=60, **filters).Status == 1
    for sleeper in app_busy:
        wait_until(sleeper.done.is_set, f"session {sleeper.id} to be killed")
        assert isinstance(sleeper.error, pymysql.err.OperationalError)
    wait_until(lambda: process_ids(client, User=app) == {app_idle.thread_id()}, "kills to show")
    wait_until(lambda: len(emulator.tasks[0]["Killed"]) == 2, "the kills to be recorded")

    assert call(client, "CancelKillTask").Status == 1
    assert alive(app_idle) and alive(batch_idle)
    assert not batch_busy.done.is_set()
    assert sorted(emulator.tasks[0]["Killed"]) == sorted(s.id for s in app_busy)

    # After the cancel a new matching session lives through several sweeps...
    late = Sleeper(app_idle)
    wait_until(lambda: late.id in process_ids(client, User=app, Command="Query"), "late query")
    time.sleep(5 * INTERVAL)
    assert not late.done.is_set()
    assert len(emulator.tasks[0]["Killed"]) == 2
    # ...and a new task with the same filters kills it: it did match.
    assert call(client, "CreateKillTask", Duration=-1, **filters).Status == 1
    wait_until(late.done.is_set, "the late session to be killed by the second task")
    # The emulator notes a kill once KILL has returned, a moment after the session sees it.
    wait_until(lambda: emulator.tasks[1]["Killed"] == [late.id], "the kill to be recorded")
    assert call(client, "CancelKillTask").Status == 1
    assert not batch_busy.done.is_set() and alive(batch_idle)


def test_kill_mysql_threads_prepare_then_commit(emulator, client, root, accounts, sessions):
    _, batch = accounts
    doomed, other = sessions(batch), sessions(batch)

    prepared = call(client, "KillMySqlThreads", Stage="Prepare", Threads=[doomed.thread_id()])
    assert prepared.Threads == [doomed.thread_id()] and prepared.SqlExecId
    committed = call(client, "KillMySqlThreads", Stage="Commit", SqlExecId=prepared.SqlExecId)
    assert committed.Threads == [doomed.thread_id()]
    wait_until(lambda: process_ids(client, User=batch) == {other.thread_id()}, "the kill")
    assert not alive(doomed) and alive(other)

    # The account the emulator logs in with is never killed.
    prepared = call(client, "KillMySqlThreads", Stage="Prepare", Threads=[root.thread_id()])
    committed = call(client, "KillMySqlThreads", Stage="Commit", SqlExecId=prepared.SqlExecId)
    assert committed.Threads == [] and alive(root)

    # A SqlExecId older than its time to live kills nothing.
    emulator.sql_exec_ttl = -1.0  # every id is already too old
    prepared = call(client, "KillMySqlThreads", Stage="Prepare", Threads=[other.thread_id()])
    committed = call(client, "KillMySqlThreads", Stage="Commit", SqlExecId=prepared.SqlExecId)
    assert committed.Threads == [] and alive(other)
