"""What the service hands back: plain data that the Slack layer turns into words. No I/O here.

Nothing in this module is markup. Text fields are plain sentences; anything a person or an
outside system supplied stays a separate field, so the renderer can escape it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.preview import Preview
from bot.requests import KillRequest


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
    """The work after filing: the request as it now is, and how its card post went."""

    request: KillRequest
    card: CardPost
    started: Outcome | None = None  # a break-glass request's start
