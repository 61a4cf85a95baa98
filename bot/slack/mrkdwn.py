"""The mrkdwn primitives: escaping, code spans, dates and mentions. Every value from outside
goes through `esc` (or `code`) before it reaches Slack; mentions are made only from IDs the bot
checked, never from typed text."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")


def esc(text: object) -> str:
    """Escape user text for mrkdwn: Slack reads <…> as links and mentions."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def when(epoch: float | None) -> str:
    """A time each reader sees in their own time zone, with a UTC fallback."""
    if epoch is None:
        return "—"
    fallback = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(epoch)}^{{date_short_pretty}} {{time_secs}}|{fallback}>"


def code(text: str) -> str:
    """Text safe inside `…`: escaped, and no backtick to end the span early."""
    return esc(text.replace("`", "'"))


def mention(user_id: str | None) -> str:
    """A live mention of a user the bot identified (a Slack ID), or plain text otherwise."""
    if user_id and _USER_ID.match(user_id):
        return f"<@{user_id}>"
    if user_id and _GROUP_ID.match(user_id):
        return f"<!subteam^{user_id}>"
    return esc(user_id or "someone")


def is_channel_id(value: str) -> bool:
    return bool(_CHANNEL_ID.match(value))


def channel_link(channel_id: str) -> str:
    if _CHANNEL_ID.match(channel_id):
        return f"<#{channel_id}>"
    return esc(channel_id)


def mention_any(ids: frozenset[str] | tuple[str, ...]) -> str:
    """ "<@U1> or <!subteam^S1>": anyone of these people or groups, from policy IDs."""
    return " or ".join(mention(i) for i in sorted(ids)) or "nobody"


def mention_all(ids: tuple[str, ...] | frozenset[str]) -> str:
    return " ".join(mention(i) for i in ids)
