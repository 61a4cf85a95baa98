"""What the service hands back: plain data that the Slack layer turns into words. No I/O here.

Nothing in this module is markup. Text fields are plain sentences; anything a person or an
outside system supplied stays a separate field, so the renderer can escape it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

from bot.preview import Preview
from bot.requests import KillRequest

TREND = 12  # samples the card's trend shows


@dataclass(frozen=True)
class Outcome:
    """What to tell the person who acted (privately), and the request it concerns."""

    ok: bool
    message: str  # plain text; may quote values from outside, so it is escaped when shown
    request: KillRequest | None = None
    field: str | None = None  # the form field a refusal is about
    preview: Preview | None = None


class Happening(StrEnum):
    """Something the channel hears about in the card's thread."""

    FILED = "filed"  # mentions the policy's `notify`
    REMINDER = "reminder"  # still pending: mentions `notify`
    ESCALATION = "escalation"  # still pending, later: mentions `escalate_to`
    STILL_RUNNING = "still_running"  # a long task: mentions its approvers
    APPROVED = "approved"  # told to the requester only
    BREAK_GLASS = "break_glass"
    APPROVAL_RECORDED = "approval_recorded"
    STARTED = "started"
    START_FAILED = "start_failed"
    REJECTED = "rejected"
    STOPPED = "stopped"
    FINISHED = "finished"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Announcement:
    """One thread reply, as data: who did what, and the facts that go with it."""

    what: Happening
    actor_id: str | None = None  # a Slack user ID the bot checked, never typed text
    missing: int = 0  # approvals still needed
    preview: Preview | None = None  # what was seen just before a start
    cloud_request_id: str | None = None
    reason: str | None = None  # typed by a person
    error: str | None = None  # explained error (may quote DBbrain's message)
    outcome_unknown: bool = False
    mentions: tuple[str, ...] = ()  # Slack user and group IDs from the policy or the record
    needed_from: tuple[frozenset[str], ...] = ()  # approvals count only from these (each)


@dataclass(frozen=True)
class CardPost:
    """How a card post went: its ts, or why not. `unknown` means no answer came back, so
    the card may be in the channel after all."""

    ts: str | None = None
    error: str | None = None  # Slack's error code, e.g. not_in_channel
    unknown: bool = False

    @property
    def permanent(self) -> bool:
        """An error that retrying will not fix until someone acts in Slack."""
        return self.error in PERMANENT_SLACK_ERRORS


PERMANENT_SLACK_ERRORS = frozenset({"not_in_channel", "channel_not_found", "is_archived"})


@dataclass(frozen=True)
class Published:
    """A filing's card post: the request as it now is, and how the post went."""

    request: KillRequest
    card: CardPost


@dataclass(frozen=True)
class KilledSession:
    id: str
    user: str
    host: str
    time: int  # seconds it had run when it was read


@dataclass(frozen=True)
class KillResult:
    """What a one-shot kill did, stored on the request and shown on its card."""

    matched: int  # the sessions chosen to kill (matching, not protected)
    killed: int  # the sessions DBbrain's Commit answered as killed
    first: tuple[KilledSession, ...] = ()  # the first killed ones, for the card
    after: int | None = None  # matching sessions read again afterwards (None: unread)
    why: str | None = None  # why fewer were killed than chosen, in plain words
    truncated: bool = False  # the read was cut at its limit: more may have matched
    protected: int = 0  # matching sessions of protected accounts, left alone

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> KillResult:
        first = tuple(KilledSession(**row) for row in data.get("first") or ())
        return cls(**{**data, "first": first})


@dataclass(frozen=True)
class EffectSummary:
    """The thread's summary when a task ends: how long it ran and what it did to the
    matching sessions, from the stored samples (or, for a one-shot kill, its result)."""

    how: Happening  # FINISHED or STOPPED
    ran_seconds: float | None
    approvers: tuple[str, ...]  # Slack user IDs
    samples: int = 0
    start: int | None = None
    peak: int | None = None
    end: int | None = None
    truncated: bool = False  # some sample was cut at the read limit: counts are "at least"
    kill: KillResult | None = None  # a one-shot kill's result


def next_effect(effect: dict, at: float, matching: int, total: int, truncated: bool) -> dict:
    """The card's summary after one more sample."""
    trend = [*effect.get("trend", []), matching][-TREND:]
    return {
        "start": effect.get("start", matching),
        "start_at": effect.get("start_at", at),
        "start_total": effect.get("start_total", total),
        "now": matching,
        "at": at,
        "peak": max(effect.get("peak", matching), matching),
        "samples": int(effect.get("samples", 0)) + 1,
        "trend": trend,
        "truncated": bool(truncated or effect.get("truncated")),
    }
