"""The work a Slack request leaves after its ack, as plain data, and what running it means.

The listeners only build a job and hand it on (see `bot.work`); the work process runs it. Jobs
cross a process boundary as JSON, so each is a small frozen record of what was asked, by whom.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

from bot.killtask import KillTaskSpec, describe_filters
from bot.service import KillTaskService, Outcome
from bot.slack import blocks
from bot.slack.adapters import SlackNotifier


@dataclass(frozen=True)
class File:
    """/killtask <instance> … or the modal: file a request (and start it if break-glass)."""

    user_id: str
    channel_id: str
    spec: KillTaskSpec
    break_glass: bool = False
    source_key: str | None = None
    response_url: str | None = None


@dataclass(frozen=True)
class Click:
    """A card button: approve, reject, stop or refresh_preview."""

    verb: str
    user_id: str
    channel_id: str
    request_id: int
    message_ts: str | None = None
    response_url: str | None = None


@dataclass(frozen=True)
class StopInstance:
    """/killtask stop <instance>: cancel whatever kill task runs there."""

    user_id: str
    channel_id: str
    instance_id: str
    product: str
    reason: str | None = None
    response_url: str | None = None


@dataclass(frozen=True)
class ShowPreview:
    """/killtask preview …: which sessions the filters match now; files nothing."""

    user_id: str
    channel_id: str
    spec: KillTaskSpec
    response_url: str | None = None


@dataclass(frozen=True)
class ListOpen:
    """/killtask list: the open requests of this channel."""

    user_id: str
    channel_id: str
    response_url: str | None = None


Job = File | Click | StopInstance | ShowPreview | ListOpen
_KINDS: dict[str, type] = {
    kind.__name__: kind for kind in (File, Click, StopInstance, ShowPreview, ListOpen)
}
_FIELDS = {kind: tuple(f.name for f in fields(kind)) for kind in _KINDS.values()}
CLICK_VERBS = frozenset({"approve", "reject", "stop", "refresh_preview"})


def encode(job: Job) -> bytes:
    # Shallow on purpose: dataclasses.asdict deep-copies, and this runs before every ack.
    data: dict[str, object] = {"kind": type(job).__name__}
    for name in _FIELDS[type(job)]:
        data[name] = getattr(job, name)
    if isinstance(job, File | ShowPreview):
        data["spec"] = job.spec.to_dict()
    return json.dumps(data, ensure_ascii=False).encode()


def decode(raw: bytes) -> Job:
    """The inverse of `encode`; a malformed job raises ValueError rather than half-running."""
    try:
        data = json.loads(raw)
        kind = _KINDS[data.pop("kind")]
        known = set(_FIELDS[kind])
        if set(data) - known:
            raise ValueError(f"unknown fields {sorted(set(data) - known)}")
        if "spec" in data:
            data["spec"] = KillTaskSpec.from_dict(data["spec"])
        job = kind(**data)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a job: {exc!r}") from exc
    if isinstance(job, Click) and job.verb not in CLICK_VERBS:
        raise ValueError(f"not a button: {job.verb!r}")
    return job


class JobRunner:
    """Runs a job through the service and tells the person who asked what happened."""

    def __init__(self, service: KillTaskService, notifier: SlackNotifier):
        self.service = service
        self.notifier = notifier

    def run(self, job: Job) -> None:
        service = self.service
        match job:
            case File():
                outcome = service.file(
                    job.user_id, job.channel_id, job.spec,
                    break_glass=job.break_glass, source_key=job.source_key,
                )  # fmt: skip
                self._answer(job, outcome, always=True)
            case Click():
                use_case = {
                    "approve": service.approve,
                    "reject": service.reject,
                    "stop": service.stop,
                    "refresh_preview": service.refresh_preview,
                }[job.verb]
                outcome = use_case(job.user_id, job.request_id, job.channel_id, job.message_ts)
                # The card and its thread show successes; the clicker hears only of problems.
                self._answer(job, outcome, always=False)
            case StopInstance():
                outcome = service.stop_instance(
                    job.user_id, job.channel_id, job.instance_id, job.product, job.reason
                )
                self._answer(job, outcome, always=True)
            case ShowPreview():
                self._tell(job, self._preview_text(job))
            case ListOpen():
                found = service.open_requests(job.user_id, job.channel_id)
                text = found.message if isinstance(found, Outcome) else blocks.list_text(found)
                self._tell(job, text)

    def _preview_text(self, job: ShowPreview) -> str:
        outcome = self.service.preview(job.user_id, job.channel_id, job.spec)
        if outcome.preview is None:
            return outcome.message
        return (
            f"Preview for `{job.spec.instance_id}`, {describe_filters(job.spec)} "
            "(nothing was filed):\n" + blocks.preview_text(outcome.preview)
        )

    def _answer(self, job: Job, outcome: Outcome, always: bool) -> None:
        if always or not outcome.ok:
            self._tell(job, outcome.message)

    def _tell(self, job: Job, text: str) -> None:
        self.notifier.tell(job.channel_id, job.user_id, text, job.response_url)
