"""DBbrain's two ways to kill sessions: kill tasks that keep sweeping, and one-shot kills.

A kill task really runs: a thread sweeps its instance's process list about once a second and
kills every session that passes all of its filters, the way DBbrain's does, until it is
cancelled or its duration ends. A one-shot kill (KillMySqlThreads) is prepared, then committed
by its SqlExecId. Both keep their state under the emulator's one lock, and never hold it while a
backend talks to its server.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from standins.dbbrain.calls import ApiError
from standins.dbbrain.matching import KillFilter, killable
from standins.sessions import Sessions, SessionsError

Task = dict[str, Any]  # what tests read: see DbbrainEmulator.tasks


def live(task: Task) -> bool:
    ends = task["EndsAt"]
    return task["CancelledAt"] is None and (ends is None or ends > time.time())


def copy_task(task: Task) -> Task:
    return {**task, "Killed": list(task["Killed"]), "Params": dict(task["Params"])}


class KillTasks:
    """Every kill task ever created, oldest first, and the threads that run the live ones."""

    def __init__(
        self,
        cond: threading.Condition,
        backend_of: Callable[[str], Sessions | None],
        interval: Callable[[], float],
    ) -> None:
        self._cond = cond  # the emulator's lock; notified on every kill and cancel
        # Both looked up at every sweep: tests may swap an instance's backend while a task runs.
        self._backend_of, self._interval = backend_of, interval
        self._tasks: list[Task] = []
        self._workers: list[tuple[threading.Thread, threading.Event]] = []

    def active(self, instance_id: str, product: str) -> Task | None:
        """The instance's live task (the task itself, not a copy), if any."""
        with self._cond:
            for task in reversed(self._tasks):
                if (task["InstanceId"], task["Product"]) == (instance_id, product):
                    return task if live(task) else None
            return None

    def all(self) -> list[Task]:
        with self._cond:
            return [copy_task(t) for t in self._tasks]

    def start(self, params: dict[str, Any], product: str, kill_filter: KillFilter) -> None:
        """Create the task and start its thread; at most one live task per instance."""
        instance_id, duration = params["InstanceId"], params["Duration"]
        with self._cond:
            if self.active(instance_id, product):
                raise ApiError("UnsupportedOperation.HasDuplicatedTask", "A kill task is running.")
            now = time.time()
            ends = None if duration == -1 else now + duration  # None: until cancelled
            task = {"InstanceId": instance_id, "Product": product, "Duration": duration}
            task |= {"Params": dict(params), "StartedAt": now, "EndsAt": ends, "CancelledAt": None}
            task |= {"Killed": [], "LastError": None}
            self._tasks.append(task)
            self._workers = [(t, e) for t, e in self._workers if t.is_alive()]
            stop = threading.Event()
            worker = threading.Thread(
                target=self._run,
                args=(task, kill_filter, stop),
                name=f"kill-task-{instance_id}",
                daemon=True,
            )
            self._workers.append((worker, stop))
            worker.start()

    def cancel(self, instance_id: str, product: str) -> bool:
        """Cancel the instance's live task; False if it had none."""
        with self._cond:
            task = self.active(instance_id, product)
            if task is None:
                return False
            task["CancelledAt"] = time.time()
            self._cond.notify_all()
            return True

    def stop_workers(self) -> None:
        """End every task's thread (the tasks stay, as they were)."""
        with self._cond:
            workers, self._workers = self._workers, []
        for _, stop in workers:
            stop.set()
        for thread, _ in workers:
            thread.join(timeout=10)  # a sweep waits at most for one server round trip

    def forget(self) -> None:
        """End every task's thread, then forget every task."""
        self.stop_workers()
        with self._cond:
            self._tasks = []

    def _run(self, task: Task, kill_filter: KillFilter, stop: threading.Event) -> None:
        """Sweep the instance's sessions every interval until the task ends or stops."""
        while not stop.is_set():
            with self._cond:
                if not live(task):
                    return
                backend = self._backend_of(task["InstanceId"])
                ends = task["EndsAt"]
            if backend is not None:
                self._sweep(task, kill_filter, backend)
            wait = self._interval()
            if ends is not None:
                wait = max(0.0, min(wait, ends - time.time()))
            stop.wait(wait)

    def _sweep(self, task: Task, kill_filter: KillFilter, backend: Sessions) -> None:
        try:
            for row in backend.list():
                if not (killable(backend, row) and kill_filter.matches(row)):
                    continue
                thread_id = int(row["ID"])
                with self._cond:
                    # Checked before every kill, so a cancel stops the killing at once.
                    if not live(task):
                        return
                    if thread_id in task["Killed"]:
                        continue  # a killed session may linger a moment as "Killed"
                if backend.kill(thread_id):
                    with self._cond:
                        task["Killed"].append(thread_id)
                        self._cond.notify_all()
        except SessionsError as e:
            with self._cond:
                task["LastError"] = str(e)  # the next sweep tries again


class PreparedKills:
    """KillMySqlThreads' first stage, by SqlExecId: which threads, on which instance, when."""

    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        self._by_id: dict[str, dict[str, Any]] = {}

    def prepare(self, target: tuple[str, str], threads: list[int]) -> str:
        """Remember the threads to kill on target (instance, product); answer the SqlExecId."""
        exec_id = f"sql-exec-{uuid.uuid4().hex[:16]}"
        prepared = {"Target": target, "Threads": list(threads)}
        with self._cond:
            self._by_id[exec_id] = prepared | {"PreparedAt": time.time()}
        return exec_id

    def take(self, exec_id: str, target: tuple[str, str]) -> dict[str, Any] | None:
        """The preparation, once only (one commit per preparation); None if unknown or not
        prepared for target."""
        with self._cond:
            prepared = self._by_id.get(exec_id)
            if prepared is None or prepared["Target"] != target:
                return None
            del self._by_id[exec_id]
            return prepared

    def forget(self) -> None:
        with self._cond:
            self._by_id = {}
