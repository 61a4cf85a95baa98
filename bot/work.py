"""The work process: everything after the ack runs here, apart from the process answering Slack.

Python runs one thread at a time per process, so filing, previews, CreateKillTask and card
updates done beside Bolt's listeners slowed every ack when many people typed at once (see
docs/benchmarks.md). Now a listener acks and queues its job for a local socket; the work
process, started and watched by the main process at a lower CPU priority, runs the jobs and the
clock (expiry, finish, card catch-up, heartbeats).

A job handed over waits in memory until it runs. If the work process dies, the jobs it had not
run yet are lost (and logged), just as when the whole bot dies after an ack: stored requests are
safe, and a start cut off mid-call becomes "outcome unknown", never sent again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

HEADER = struct.Struct(">I")  # each job is a length-prefixed frame on a stream socket
MAX_FRAME = 1 << 20
NICE = 10  # under CPU pressure the acks come first; the work still gets its share


class WorkChannel:
    """The listeners' side: hands jobs to the work process, or says it could not.

    After an ack, `post` only queues the job: one sender thread writes whatever has queued up
    in a single write. Sixteen listeners each waiting on the socket would each wait again for
    the interpreter lock, and under load those waits slowed every ack (docs/benchmarks.md)."""

    MAX_BATCH = 256

    def __init__(self, path: str, patience: float = 2.0):
        self.path = path
        self.patience = patience
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[bytes, Callable[[], None]] | None] = (
            queue.SimpleQueue()
        )
        self._sender: threading.Thread | None = None
        self._sender_lock = threading.Lock()

    def submit(self, frame: bytes) -> bool:
        """True once the work process has the job. False after `patience` seconds of trying:
        the caller tells the person that nothing was done."""
        return self._write([frame]) == 1

    def post(self, frame: bytes, on_failure: Callable[[], None]) -> None:
        """Queue a job without waiting. If it cannot be handed over within `patience`,
        `on_failure` runs (on the sender thread) to tell the person."""
        with self._sender_lock:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send, name="work-send", daemon=True)
                self._sender.start()
        self._queue.put((frame, on_failure))

    def _send(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True  # hand over what came before the close, then stop
                    break
                batch.append(item)
            try:
                delivered = self._write([frame for frame, _ in batch])
            except Exception:  # never let the sender die: later jobs would wait unheard
                log.exception("work_handoff_crashed")
                delivered = 0
            for _, on_failure in batch[delivered:]:
                try:
                    on_failure()
                except Exception:
                    log.exception("work_handoff_failure_report_failed")

    def _write(self, frames: list[bytes]) -> int:
        """Write the frames in order; how many the work process got whole. A frame cut short
        by an error is dropped whole by the reader, and frames already through are never
        written again, so no job can run twice."""
        ends: list[int] = []
        data = bytearray()
        for frame in frames:
            data += HEADER.pack(len(frame)) + frame
            ends.append(len(data))
        start = 0  # where the first frame not yet through whole begins in data
        sent = 0  # how far into data the bytes written so far reach
        deadline = time.monotonic() + self.patience
        with self._lock:
            while start < len(data):
                try:
                    if self._sock is None:
                        self._sock = self._connect()
                    view = memoryview(data)
                    while sent < len(data):
                        sent += self._sock.send(view[sent:])
                    start = sent
                except OSError as exc:
                    if self._sock is not None:
                        log.info("work_handoff_retrying error=%s", type(exc).__name__)
                    self._drop()
                    start = max([0, *[end for end in ends if end <= sent]])
                    sent = start  # resend from the first frame that did not get through whole
                    if time.monotonic() >= deadline:
                        lost = sum(1 for end in ends if end > start)
                        log.error("work_handoff_failed error=%s jobs=%s", type(exc).__name__, lost)
                        break
                    time.sleep(0.05)
        return sum(1 for end in ends if end <= start)

    def ready(self) -> bool:
        """Whether the work process is there to take jobs (for /healthz)."""
        with self._lock:
            if self._sock is not None and not _alive(self._sock):
                self._drop()
            if self._sock is None:
                try:
                    self._sock = self._connect()
                except OSError:
                    return False
            return True

    def close(self) -> None:
        """Hand over everything posted so far, then hang up."""
        with self._sender_lock:
            sender, self._sender = self._sender, None
        if sender is not None:
            self._queue.put(None)
            sender.join(self.patience * 4)
        with self._lock:
            self._drop()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.patience)  # a stuck work process must not hold an ack for long
        try:
            sock.connect(_address(self.path))
        except OSError:
            sock.close()
            raise
        return sock

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class WorkProcess:
    """The main process's side: starts `python -m bot work`, starts it again if it dies, and
    stops it last, after the listeners, so every job already handed over still runs."""

    def __init__(self, drain_timeout: float = 60.0):
        self.drain_timeout = drain_timeout
        # An abstract socket (Linux): no file to leave behind when the bot is killed. The work
        # process accepts only connections from processes of its own user.
        self.path = f"@killtask-{os.getpid()}-{secrets.token_hex(8)}"
        self._owner = os.getpid()
        self._proc: subprocess.Popen | None = None
        self._spawned_at = 0.0
        self._ready_to_go = False
        self._lifeline: int | None = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="work-watch", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._watcher.start()

    def go(self) -> None:
        """Let the work process begin (it waits for this before touching the database)."""
        self._ready_to_go = True
        self._say_go()

    def _say_go(self) -> None:
        if self._lifeline is not None:
            try:
                os.write(self._lifeline, b"g")
            except OSError:
                log.warning("work_process_not_listening pid=%s", self._proc and self._proc.pid)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        channel = WorkChannel(self.path)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if channel.ready():
                    return True
                if self._proc is not None and self._proc.poll() is not None:
                    return False
                time.sleep(0.01)
            return False
        finally:
            channel.close()

    def stop(self) -> int | None:
        """Close the lifeline; the work process finishes what it holds and exits."""
        if os.getpid() != self._owner:  # a forked server worker inherits this object
            return None
        self._stopping.set()
        self._close_lifeline()
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(self.drain_timeout)
            except subprocess.TimeoutExpired:
                log.error("work_process_drain_timeout seconds=%s killing=true", self.drain_timeout)
                self._proc.kill()
                code = self._proc.wait(5)
        return code

    def _spawn(self) -> None:
        read_end, write_end = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "work", self.path, str(read_end)],
            pass_fds=(read_end,),
        )
        os.close(read_end)
        self._lifeline = write_end
        self._spawned_at = time.monotonic()
        log.info("work_process_started pid=%s", self._proc.pid)

    def _close_lifeline(self) -> None:
        if self._lifeline is not None:
            with contextlib.suppress(OSError):
                os.close(self._lifeline)
            self._lifeline = None

    def _watch(self) -> None:
        backoff = 0.5
        while not self._stopping.wait(0.5):
            assert self._proc is not None
            code = self._proc.poll()
            if code is None or self._stopping.is_set():
                continue
            log.error(
                "work_process_exited pid=%s code=%s restarting_in=%.1fs jobs_not_yet_run=lost",
                # gunicorn's master reaps every child, so the status may be lost: say so
                self._proc.pid, code or "unknown", backoff,
            )  # fmt: skip
            self._close_lifeline()
            # A process that keeps dying at once is not helped by restarting it in a tight loop.
            died_young = time.monotonic() - self._spawned_at < 10
            if self._stopping.wait(backoff):
                return
            self._spawn()
            if self._ready_to_go:
                self._say_go()
            backoff = min(backoff * 2, 30.0) if died_young else 0.5


def serve(
    path: str,
    lifeline_fd: int,
    run: Callable[[bytes], None],
    threads: int = 16,
    drain_timeout: float = 30.0,
) -> None:
    """The work process's loop: take jobs from every connection and run them on a pool,
    until the lifeline closes (the main process stopped or died); then finish what was taken."""
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="work")
    readers: list[tuple[threading.Thread, socket.socket]] = []

    def run_safely(frame: bytes) -> None:
        try:
            run(frame)
        except Exception:
            log.exception("work_failed")

    def read(conn: socket.socket) -> None:
        buffer = bytearray()
        with conn:
            # Large reads: one wake-up takes every job waiting, however busy the pool is.
            while chunk := _recv(conn):
                buffer += chunk
                while len(buffer) >= HEADER.size:
                    (size,) = HEADER.unpack_from(buffer)
                    if size > MAX_FRAME:
                        log.error("work_frame_too_large bytes=%s closing=true", size)
                        return
                    if len(buffer) < HEADER.size + size:
                        break
                    frame = bytes(buffer[HEADER.size : HEADER.size + size])
                    del buffer[: HEADER.size + size]
                    pool.submit(run_safely, frame)
        if buffer:
            log.warning("work_frame_cut_short bytes=%s dropped=true", len(buffer))

    def accept(listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener was closed: we are stopping
            if _peer_uid(conn) != os.getuid():
                log.warning("work_connection_refused reason=another_user")
                conn.close()
                continue
            reader = threading.Thread(target=read, args=(conn,), name="work-read", daemon=True)
            readers.append((reader, conn))
            reader.start()

    if not path.startswith("@"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a work process that died
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(_address(path))
    listener.listen(64)
    threading.Thread(target=accept, args=(listener,), name="work-accept", daemon=True).start()
    log.info("work_process_ready pid=%s", os.getpid())
    while os.read(lifeline_fd, 1):
        pass  # only the start word is ever written: EOF means the main process stopped or died
    # Senders close their connections before the lifeline closes; finish reading what they sent.
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    deadline = time.monotonic() + drain_timeout
    for reader, conn in list(readers):
        reader.join(max(0.0, deadline - time.monotonic()))
        if reader.is_alive():  # a sender that never hung up: stop listening to it
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            reader.join(1.0)
    pool.shutdown(wait=True)


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(1 << 16)
    except OSError:
        return b""


def _alive(sock: socket.socket) -> bool:
    """A connection whose far end closed reads as EOF; a live one has nothing to read."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def _address(path: str) -> str:
    """`@name` is Linux's abstract namespace (no file); anything else is a filesystem path."""
    return "\0" + path[1:] if path.startswith("@") else path


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]
