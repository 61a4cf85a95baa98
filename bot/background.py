"""Work after the ack, in this process: a bounded pool of threads.

What a person was told about is already in the store before the ack (see bot.service), so a
job lost with the process is finished by the clock of any replica. A job that raises is never
silent: its `on_failure` tells the person what was not done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


class Background:
    def __init__(self, threads: int = 8, max_waiting: int = 1000):
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="after-ack")
        # Bounds the jobs queued or running: past it, the person hears "busy" at once.
        self._room = threading.BoundedSemaphore(max_waiting)

    def submit(
        self, job: Callable[[], None], on_failure: Callable[[BaseException], None], name: str
    ) -> bool:
        """Run `job` soon; False (and nothing run) when the pool is full or shutting down."""
        if not self._room.acquire(blocking=False):
            log.error("after_ack_full job=%s", name)
            return False
        try:
            self._pool.submit(self._run, job, on_failure, name)
        except RuntimeError:  # shut down: the process is stopping
            self._room.release()
            return False
        return True

    def _run(
        self, job: Callable[[], None], on_failure: Callable[[BaseException], None], name: str
    ) -> None:
        try:
            job()
        except Exception as exc:
            log.exception("after_ack_failed job=%s", name)
            try:
                on_failure(exc)
            except Exception:
                log.exception("after_ack_failure_report_failed job=%s", name)
        finally:
            self._room.release()

    def shutdown(self) -> None:
        """Finish every job already taken; take no new ones."""
        self._pool.shutdown(wait=True)
