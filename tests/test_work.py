"""The hand-over between the listeners and the work process: every job sent runs once, a job
cut short never runs, the work process finishes what it took before it exits, and a listener
whose work process is gone gives up in bounded time instead of hanging an ack."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from bot.work import HEADER, WorkChannel, serve


class Server:
    """`bot.work.serve` on a thread, as the work process runs it, recording the jobs it ran."""

    def __init__(self, path: str, slow: float = 0.0, drain_timeout: float = 30.0):
        self.path = path
        self.ran: list[bytes] = []
        self._lock = threading.Lock()
        self.slow = slow
        read_end, self.lifeline = os.pipe()
        self.thread = threading.Thread(
            target=serve, args=(path, read_end, self._run), daemon=True,
            kwargs={"drain_timeout": drain_timeout},
        )  # fmt: skip
        self.thread.start()
        self._read_end = read_end

    def _run(self, frame: bytes) -> None:
        time.sleep(self.slow)
        if frame == b"boom":
            raise RuntimeError("a job that fails must not take the others with it")
        with self._lock:
            self.ran.append(frame)

    def stop(self, timeout: float = 10.0) -> None:
        os.close(self.lifeline)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "serve did not return after the lifeline closed"
        os.close(self._read_end)


def wait_for(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "work.sock")


def test_every_job_sent_from_many_threads_runs_once(path: str) -> None:
    server = Server(path)
    channel = WorkChannel(path)
    wait_for(channel.ready)
    frames = [f"job-{i}".encode() * (1 + i % 50) for i in range(2000)]

    def send(part: list[bytes]) -> None:
        for frame in part:
            assert channel.submit(frame)

    senders = [threading.Thread(target=send, args=(frames[i::8],)) for i in range(8)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    wait_for(lambda: len(server.ran) == len(frames))
    assert sorted(server.ran) == sorted(frames)
    channel.close()
    server.stop()


def test_a_failing_job_does_not_stop_the_others(path: str) -> None:
    server = Server(path)
    channel = WorkChannel(path)
    for frame in (b"one", b"boom", b"two"):
        assert channel.submit(frame)
    wait_for(lambda: len(server.ran) == 2)
    assert sorted(server.ran) == [b"one", b"two"]
    channel.close()
    server.stop()


def test_jobs_taken_are_finished_before_the_work_process_exits(path: str) -> None:
    server = Server(path, slow=0.2)
    channel = WorkChannel(path)
    for i in range(20):
        assert channel.submit(b"slow-%d" % i)
    channel.close()  # the listeners hang up first, then the main process closes the lifeline
    server.stop()
    assert len(server.ran) == 20


def test_a_frame_cut_short_is_dropped_whole(path: str) -> None:
    server = Server(path)
    wait_for(WorkChannel(path).ready)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(path)
        raw.sendall(HEADER.pack(5) + b"whole")
        raw.sendall(HEADER.pack(100) + b"only part of it")
    channel = WorkChannel(path)
    assert channel.submit(b"after")
    wait_for(lambda: b"after" in server.ran)
    time.sleep(0.1)
    assert sorted(server.ran) == [b"after", b"whole"]
    channel.close()
    server.stop()


def test_a_listener_without_a_work_process_gives_up_in_bounded_time(path: str) -> None:
    channel = WorkChannel(path, patience=0.3)
    began = time.monotonic()
    assert not channel.submit(b"lost")
    assert time.monotonic() - began < 5  # bounded: well inside Slack's 3 s, with room for CI
    assert not channel.ready()


def test_ready_follows_the_work_process_and_a_restart_is_found_again(path: str) -> None:
    first = Server(path, drain_timeout=0.2)  # it stops while the listener is still connected
    channel = WorkChannel(path, patience=0.5)
    wait_for(channel.ready)
    assert channel.submit(b"to the first")
    wait_for(lambda: first.ran == [b"to the first"])
    first.stop()
    wait_for(lambda: not channel.ready())
    second = Server(path)  # a restarted work process binds the same path
    wait_for(channel.ready)
    assert channel.submit(b"to the second")
    wait_for(lambda: second.ran == [b"to the second"])
    channel.close()
    second.stop()


def test_posted_jobs_from_many_threads_all_run_once_and_close_hands_over_the_rest(
    path: str,
) -> None:
    server = Server(path)
    channel = WorkChannel(path)
    wait_for(channel.ready)
    failed: list[bytes] = []
    frames = [f"posted-{i}".encode() * (1 + i % 30) for i in range(3000)]

    def post(part: list[bytes]) -> None:
        for frame in part:
            channel.post(frame, lambda frame=frame: failed.append(frame))

    posters = [threading.Thread(target=post, args=(frames[i::8],)) for i in range(8)]
    for poster in posters:
        poster.start()
    for poster in posters:
        poster.join()
    channel.close()  # returns once everything posted before it is with the work process
    wait_for(lambda: len(server.ran) == len(frames))
    assert sorted(server.ran) == sorted(frames) and failed == []
    server.stop()


def test_posted_jobs_that_cannot_be_handed_over_are_each_reported(path: str) -> None:
    channel = WorkChannel(path, patience=0.3)
    failed: list[bytes] = []
    for frame in (b"a", b"b", b"c"):
        channel.post(frame, lambda frame=frame: failed.append(frame))
    wait_for(lambda: len(failed) == 3)
    assert sorted(failed) == [b"a", b"b", b"c"]
    channel.close()


def test_a_work_process_that_stalls_gets_no_job_twice(path: str) -> None:
    """Frames already through when a write times out are not written again elsewhere."""
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.bind(path)
    stalled.listen(1)  # accepts the connection but never reads: the write times out
    channel = WorkChannel(path, patience=0.5)
    big = [bytes([65 + i % 26]) * 60_000 for i in range(40)]  # far more than the socket holds
    delivered = channel._write(big)
    assert 0 < delivered < len(big)
    conn, _ = stalled.accept()
    received = bytearray()
    conn.settimeout(0.5)
    try:
        while chunk := conn.recv(1 << 20):
            received += chunk
    except TimeoutError:
        pass
    whole = 0
    while len(received) >= HEADER.size + (size := HEADER.unpack_from(received)[0]):
        assert bytes(received[HEADER.size : HEADER.size + size]) == big[whole]
        del received[: HEADER.size + size]
        whole += 1
    assert whole == delivered  # what it reports delivered is exactly what got through whole
    conn.close()
    stalled.close()
    channel.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_hand_jobs_to_the_work_process() -> None:
    path = f"@killtask-test-{os.getpid()}-{time.monotonic_ns()}"  # abstract: no file to guard it
    server = Server(path)
    wait_for(WorkChannel(path).ready)
    pid = os.fork()
    if pid == 0:  # a process of another user tries to slip a job in
        try:
            os.setgid(65534)
            os.setuid(65534)
            WorkChannel(path, patience=0.3).submit(b"from a stranger")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    channel = WorkChannel(path)
    assert channel.submit(b"from the bot")
    wait_for(lambda: b"from the bot" in server.ran)
    time.sleep(0.1)
    assert server.ran == [b"from the bot"]
    channel.close()
    server.stop()
