"""Reading an instance for the card: the live preview, DBbrain's diagnosis, and the samples of
a running task's effect. Every read is a Describe* call, so the gateway's rate limiter keeps it
to the reads' share of each second: a read never delays a Create, a Stop or a kill.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from bot.cloud import Cloud, CloudError
from bot.killtask import KillTaskSpec
from bot.policy import Policy
from bot.preview import (
    Preview,
    Session,
    diag_events,
    list_filters,
    lock_warning,
    matches,
    summarize,
)

PREVIEW_LIMIT = 5000  # generous, so a storm of thousands still counts; a cut answer is flagged
DIAGNOSIS_WINDOW = 3600.0  # DBbrain's diagnosis events of the last hour
BEIJING = 8 * 3600  # DBbrain's times are China Standard Time (UTC+8)


def dbbrain_time(at: float) -> str:
    """A time as DBbrain's APIs write it: '2026-11-29 22:10:00', China Standard Time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at + BEIJING))


class Reader:
    def __init__(self, cloud: Cloud, policy: Callable[[], Policy], clock: Callable[[], float]):
        self.cloud = cloud
        self.policy = policy  # read per call: the policy may reload
        self.clock = clock

    def sessions(self, spec: KillTaskSpec, wait: bool = True) -> Preview:
        """What the kill task would hit now, matched by the bot with the kill task's rules.
        Without `wait`, a read that finds the read budget in use raises CloudError."""
        now = self.clock()
        policy = self.policy()
        try:
            listed = self.cloud.list_sessions(
                spec.instance_id, spec.product, list_filters(spec), PREVIEW_LIMIT, wait=wait
            )
        except CloudError as error:
            if not wait:
                raise
            return Preview(read_at=now, error=error.explain(), cloud_request_id=error.request_id)
        return summarize(
            spec, listed.rows, read_at=now, limit=PREVIEW_LIMIT,
            protected_users=policy.protected_users, show_statements=policy.show_statements,
            cloud_request_id=listed.request_id,
        )  # fmt: skip

    def preview(self, spec: KillTaskSpec) -> Preview:
        """The card's preview: the sessions, the lock holder, and DBbrain's diagnosis."""
        preview = self.sessions(spec)
        if preview.error:
            return preview
        return self._with_diagnosis(spec, self._with_holder(spec, preview))

    def _with_holder(self, spec: KillTaskSpec, preview: Preview) -> Preview:
        """A read narrowed by account or command cannot see a holder of another account or
        command: when sessions wait on a lock, read that database's sessions once more."""
        narrowed = set(list_filters(spec)) - {"DB"}
        if preview.lock is None or not narrowed:
            return preview
        try:
            listed = self.cloud.list_sessions(
                spec.instance_id, spec.product, {"DB": preview.lock.db}, PREVIEW_LIMIT
            )
        except CloudError:
            return preview  # the warning stands; only the holder is not named
        sessions = [Session.from_row(row) for row in listed.rows]
        hits = [s for s in sessions if matches(spec, s)]
        lock = lock_warning(hits, sessions, self.policy().show_statements)
        return replace(preview, lock=lock or preview.lock)

    def _with_diagnosis(self, spec: KillTaskSpec, preview: Preview) -> Preview:
        now = self.clock()
        try:
            items = self.cloud.diag_events(
                spec.instance_id, spec.product,
                dbbrain_time(now - DIAGNOSIS_WINDOW), dbbrain_time(now),
            )  # fmt: skip
        except CloudError as error:
            return replace(preview, diagnosis_error=error.explain())
        return replace(preview, diagnosis=diag_events(items))
