"""A one-shot kill: the sessions that match now are killed once, with KillMySqlThreads.

It shares the start's exactly-once path: the approved -> starting claim is won by one process,
which re-reads the sessions with the preview's rules and kills exactly those, at most 100
thread IDs per Prepare, each Commit sent right after its Prepare (a SqlExecId is good for about
10 s). A Commit whose outcome is unknown ends the request as "outcome unknown" and is never
sent again; a process that dies mid-kill is given up by the clock the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from bot.audit import AuditEntry, entry
from bot.cards import Cards
from bot.cloud import Cloud, CloudError
from bot.killtask import ONCE_BATCH, KillTaskSpec
from bot.outcomes import (
    Announcement,
    EffectSummary,
    Happening,
    KilledSession,
    KillResult,
    Outcome,
)
from bot.policy import Policy
from bot.preview import Session, list_filters, matches
from bot.reading import PREVIEW_LIMIT, Reader
from bot.requests import KillRequest, State
from bot.store import Store

SHOWN = 10  # killed sessions listed on the card


class OneShot:
    def __init__(  # type: ignore[no-untyped-def]
        self, store: Store, cloud: Cloud, cards: Cards, reader: Reader,
        policy: Callable[[], Policy], may_kill_all: Callable[[KillRequest], bool], clock,
    ):  # fmt: skip
        self.store, self.cloud, self.cards, self.reader = store, cloud, cards, reader
        self.policy, self.may_kill_all, self.clock = policy, may_kill_all, clock

    def run(self, claimed: KillRequest, actor: str) -> Outcome:
        """Kill what matches now; `claimed` was just moved to starting by this process."""
        spec = claimed.spec
        try:
            chosen, protected, truncated = self._choose(spec)
        except CloudError as error:
            why = f"The sessions could not be read, so nothing was killed. {error.explain()}"
            return self._fail(claimed, actor, error.code, why, error.request_id)
        cap = self.policy().once_max_sessions
        if len(chosen) > cap and not self.may_kill_all(claimed):
            why = (
                f"{len(chosen)} sessions match now, more than the policy's once.max_sessions "
                f"({cap}), so nothing was killed. Narrow the filters, or have someone whose "
                "role allows `kill_all` file or approve it."
            )
            return self._fail(claimed, actor, "TooManySessions", why, None)
        started = self.clock()
        killed, audit, error = self._kill(claimed, actor, chosen)
        result = self._result(spec, chosen, killed, protected, truncated, error)
        fields = {"started_at": started, "ends_at": self.clock()}
        fields["cloud_request_id"] = next(
            (a.cloud_request_id for a in reversed(audit) if a.cloud_request_id), None
        )
        fields["kill_result"] = json.dumps(result.to_dict())
        if error is not None and error.outcome_unknown:
            return self._unknown(claimed, actor, error, audit, fields)
        if error is not None and not killed:
            return self._fail(claimed, actor, error.code, error.explain(), error.request_id, audit)
        done = entry(claimed, actor, "kill_mysql_threads", "finished",
                     detail=f"killed={result.killed} of {result.matched}")  # fmt: skip
        moved = self.store.move(claimed.id, State.FINISHED, audit=[*audit, done], **fields)
        request = moved or self.store.get(claimed.id) or claimed
        self.cards.sync(request)
        if moved is not None:
            summary = EffectSummary(
                Happening.FINISHED, None, request.approvers or (actor,), kill=result
            )
            self.cards.notifier.post_summary(request, summary, None)
        return Outcome(True, f"Request #{claimed.id}: killed {result.killed} sessions.", request)

    def _choose(self, spec: KillTaskSpec) -> tuple[list[Session], int, bool]:
        """The matching sessions now, by the preview's rules; protected accounts are left
        alone (a one-shot names its threads, so it can honour the policy exactly)."""
        listed = self.cloud.list_sessions(
            spec.instance_id, spec.product, list_filters(spec), PREVIEW_LIMIT
        )
        sessions = [Session.from_row(row) for row in listed.rows]
        hits = [s for s in sessions if matches(spec, s) and s.id.isdigit()]
        protected = self.policy().protected_users
        chosen = [s for s in hits if s.user not in protected]
        return chosen, len(hits) - len(chosen), len(listed.rows) >= PREVIEW_LIMIT

    def _kill(
        self, request: KillRequest, actor: str, chosen: list[Session]
    ) -> tuple[list[Session], list[AuditEntry], CloudError | None]:
        """Prepare and commit batch by batch; stop at the first failure."""
        spec, by_id = request.spec, {int(s.id): s for s in chosen}
        ids = sorted(by_id)
        killed: list[Session] = []
        audit: list[AuditEntry] = []
        for first in range(0, len(ids), ONCE_BATCH):
            batch = ids[first : first + ONCE_BATCH]
            try:
                prepared = self.cloud.prepare_kill(spec.instance_id, spec.product, batch)
                exec_id = prepared.sql_exec_id or ""
                committed = self.cloud.commit_kill(spec.instance_id, spec.product, exec_id)
            except CloudError as error:
                detail = f"{error.code}: {error.message} batch={len(batch)}"
                audit.append(entry(request, actor, "kill_mysql_threads", "failed",
                                   cloud_request_id=error.request_id, detail=detail))  # fmt: skip
                return killed, audit, error
            killed += [by_id[t] for t in committed.threads if t in by_id]
            audit.append(entry(request, actor, "kill_mysql_threads", "committed",
                               cloud_request_id=committed.request_id,
                               detail=f"prepared={len(batch)} killed={len(committed.threads)} "
                                      f"prepare_request_id={prepared.request_id}"))  # fmt: skip
        return killed, audit, None

    def _result(
        self, spec: KillTaskSpec, chosen: list[Session], killed: list[Session],
        protected: int, truncated: bool, error: CloudError | None,
    ) -> KillResult:  # fmt: skip
        after = self.reader.sessions(spec)
        why = None
        if error is not None:
            why = f"DBbrain stopped the kill part way: {error.explain()}"
        elif len(killed) < len(chosen):
            why = (
                f"the other {len(chosen) - len(killed)} had ended, or could not be killed, "
                "by the time DBbrain committed the kill"
            )
        longest = sorted(killed, key=lambda s: (-s.time, int(s.id)))[:SHOWN]
        return KillResult(
            matched=len(chosen), killed=len(killed),
            first=tuple(KilledSession(s.id, s.user, s.client_ip, s.time) for s in longest),
            after=None if after.error else after.matched, why=why, truncated=truncated,
            protected=protected,
        )  # fmt: skip

    def _fail(
        self, request: KillRequest, actor: str, code: str, why: str, cloud_request_id: str | None,
        audit: list[AuditEntry] = (),  # type: ignore[assignment]
    ) -> Outcome:  # fmt: skip
        failed = entry(request, actor, "kill_mysql_threads", "failed", detail=f"{code}: {why}")
        moved = self.store.move(
            request.id, State.FAILED, error_code=code, error_message=why,
            cloud_request_id=cloud_request_id, audit=[*audit, failed],
        )  # fmt: skip
        request = moved or self.store.get(request.id) or request
        self.cards.sync(request)
        if moved is not None:
            news = Announcement(Happening.START_FAILED, actor, error=why)
            self.cards.notifier.announce(request, news)
        return Outcome(False, f"Failed: {why}", request)

    def _unknown(
        self, request: KillRequest, actor: str, error: CloudError, audit: list[AuditEntry],
        fields: dict[str, object],
    ) -> Outcome:  # fmt: skip
        moved = self.store.move(
            request.id, State.UNKNOWN, error_code=error.code, error_message=error.explain(),
            audit=audit, **{**fields, "cloud_request_id": error.request_id},
        )  # fmt: skip
        request = moved or self.store.get(request.id) or request
        self.cards.sync(request)
        if moved is not None:
            news = Announcement(
                Happening.START_FAILED, actor, error=error.explain(), outcome_unknown=True
            )
            self.cards.notifier.announce(request, news)
        return Outcome(False, f"Outcome unknown: {error.explain()}", request)
