"""Work after the ack, in this process: bounded pools of threads, one per lane.

Lanes keep one kind of slow work from queueing behind another: posting a card or a reply
(`slack`) never waits behind DBbrain reads (`reads`: previews, refreshes), and a start or a
stop (`urgent`) never waits behind either. What a person was told about is already in the
store before the ack (see bot.service), so a job lost with the process is finished by the
clock of any replica. A job that raises is never silent: its `on_failure` tells the person
what was not done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

LANES = {"slack": 6, "reads": 4, "urgent": 4}  # threads per lane


class Background:
    def __init__(self, lanes: dict[str, int] | None = None, max_waiting: int = 1000):
        self._pools = {
            lane: ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"after-ack-{lane}")
            for lane, threads in (lanes or LANES).items()
        }
        # Bounds the jobs queued or running: past it, the person hears "busy" at once.
        self._room = threading.BoundedSemaphore(max_waiting)

    def submit(
        self,
        job: Callable[[], None],
        on_failure: Callable[[BaseException], None],
        name: str,
        lane: str = "slack",
    ) -> bool:
        """Run `job` soon; False (and nothing run) when the pool is full or shutting down."""
        if not self._room.acquire(blocking=False):
            log.error("after_ack_full job=%s", name)
            return False
        try:
            self._pools[lane].submit(self._run, job, on_failure, name)
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
        """Finish every job already taken (and what they hand on); take no new ones. In the
        lanes' order: a card post (slack) may still hand on a read or a start."""
        for pool in self._pools.values():
            pool.shutdown(wait=True)
