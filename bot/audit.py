"""Audit records: who did what, when, to which request, and with what outcome. No I/O here.

The store writes each entry in the same transaction as the change it describes, so the log
never claims a move that did not happen, nor misses one that did.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.requests import KillRequest

SYSTEM = "system"  # the actor recorded for moves nobody clicked (expiry, finish, the clock)


@dataclass(frozen=True)
class AuditEntry:
    actor_id: str
    action: str
    outcome: str
    request_id: int | None = None
    channel_id: str | None = None
    instance_id: str | None = None
    cloud_request_id: str | None = None
    detail: str | None = None


def entry(
    request: KillRequest | None,
    actor_id: str,
    action: str,
    outcome: str,
    *,
    channel_id: str | None = None,
    instance_id: str | None = None,
    cloud_request_id: str | None = None,
    detail: str | None = None,
) -> AuditEntry:
    """An entry about `request` (or about an instance, when there is no request)."""
    return AuditEntry(
        actor_id=actor_id,
        action=action,
        outcome=outcome,
        request_id=request.id if request else None,
        channel_id=channel_id or (request.channel_id if request else None),
        instance_id=instance_id or (request.spec.instance_id if request else None),
        cloud_request_id=cloud_request_id,
        detail=detail,
    )


# What each audited (action, outcome) means for a request, for the requests-by-outcome metric.
REQUEST_OUTCOMES: dict[tuple[str, str], str] = {
    ("request", "filed"): "filed",
    ("request", "denied"): "refused",
    ("approve", "denied"): "refused",
    ("approve", "recorded"): "approved",
    ("reject", "rejected"): "rejected",
    ("create_kill_task", "running"): "started",
    ("create_kill_task", "failed"): "failed",
    ("create_kill_task", "unknown"): "unknown",
    ("cancel_kill_task", "stopped"): "stopped",
    ("expire", "expired"): "expired",
}
