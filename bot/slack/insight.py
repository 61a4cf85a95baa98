"""What the card says beyond the request itself: the live effect of a running task, what a
one-shot kill did, the lock warning and DBbrain's own diagnosis. Pure builders; every value
from outside (accounts, hosts, states, database and event names) is escaped here.
"""

from __future__ import annotations

from bot.outcomes import KillResult
from bot.preview import DiagEvent, LockWarning
from bot.requests import KillRequest, State
from bot.slack.mrkdwn import code, esc, when

BARS = "▁▂▃▄▅▆▇█"
DIAGNOSIS_SHOWN = 5


def sessions(n: int) -> str:
    return f"{n} session" if n == 1 else f"{n} sessions"


def trend(counts: list[int]) -> str:
    """A compact trend: one bar per sample, scaled to the highest."""
    top = max(counts, default=0)
    if top <= 0:
        return BARS[0] * len(counts)
    return "".join(BARS[round(c / top * (len(BARS) - 1))] for c in counts)


def effect_line(request: KillRequest) -> str | None:
    """'Matching sessions now 3 (412 when it started) ▇▅▂▁▁', updated in place."""
    effect = request.effect
    if not effect or "now" not in effect:
        if effect and effect.get("error"):
            return f":grey_question: The effect could not be read: {esc(effect['error'])}"
        return None
    more = "+" if effect.get("truncated") else ""
    word = "now" if request.state is State.RUNNING else "at the end"
    count = int(effect.get("samples", 0))
    text = (
        f":chart_with_downwards_trend: *Matching sessions {word} {effect['now']}{more}* "
        f"({effect['start']}{more} when it started, peak {effect['peak']}{more}) "
        f"{trend(list(effect.get('trend') or []))} · {count} sample{'s' if count != 1 else ''}, "
        f"last read {when(effect.get('at'))}"
    )
    if effect.get("truncated"):
        text += ". A read was cut at its limit, so these are lower bounds."
    if effect.get("error"):
        text += f"\n:grey_question: The last sample could not be read: {esc(effect['error'])}"
    return text


def once_title(request: KillRequest) -> str | None:
    """The card's title for a one-shot kill, where it differs from the state's."""
    if request.state is State.STARTING:
        return "Approved, killing the matching sessions"
    if request.state is State.FINISHED and request.kill_result:
        result = KillResult.from_dict(request.kill_result)
        if result.killed == result.matched:
            return f"Killed {sessions(result.killed)}"
        return f"Killed {result.killed} of {sessions(result.matched)}"
    return None


def kill_result_text(result: KillResult, unknown: bool = False) -> str:
    """What a one-shot kill did: how many, which (the first 10), what is left, and why."""
    if unknown:
        lines = [
            f"*Confirmed killed: {result.killed} of {sessions(result.matched)}.* The outcome of "
            "the last batch is unknown (see above), so more of them may have died."
        ]
    elif result.matched == 0:
        lines = ["*No session matched when the kill ran; nothing was killed.*"]
    elif result.killed == result.matched:
        lines = [f"*Killed {sessions(result.killed)}* with KillMySqlThreads."]
    else:
        lines = [f"*Killed {result.killed} of {sessions(result.matched)}*: {esc(result.why)}."]
    if result.after is not None:
        lines.append(f"Matching sessions read again afterwards: {result.after}.")
    if result.protected:
        lines.append(
            f"{sessions(result.protected)} of protected accounts matched and were left alone."
        )
    if result.truncated:
        lines.append(
            ":warning: DBbrain's answer was cut at its limit, so more sessions may have matched "
            "than were killed; file again to kill the rest."
        )
    if result.first:
        more = f" (the longest-running {len(result.first)})" if result.killed > 10 else ""
        lines.append(f"*Killed{more}:*")
        for s in result.first:
            lines.append(f"• #{esc(s.id)} {esc(s.user)}@{esc(s.host)} · {s.time} s")
    return "\n".join(lines)


def lock_text(lock: LockWarning, matched: int) -> str:
    where = f"`{code(lock.db)}`" if lock.db else "their database"
    text = (
        f":lock: *{lock.waiting} of {sessions(matched)} wait on a lock* "
        f"(“{esc(lock.state)}”, on {where}). Killing the waiters will not help: the "
        "session holding the lock will."
    )
    holder = lock.holder
    if holder is None:
        return text + " No session on that database that is not waiting was seen."
    what = f", `{code(holder.statement)}`" if holder.statement else ""
    return text + (
        f" Likely holder: *#{esc(holder.id)}* {esc(holder.user)}@{esc(holder.host)}, "
        f"{esc(holder.command)} for {holder.time} s{what} (the longest-running session on "
        "that database that is not waiting). Check it before you kill it."
    )


def diagnosis_text(events: tuple[DiagEvent, ...], error: str | None) -> str | None:
    """DBbrain's own diagnosis events for the instance in the last hour, on one line."""
    if error:
        return f":stethoscope: DBbrain's diagnosis could not be read: {esc(error)}"
    if not events:
        return None
    shown = "; ".join(
        f"{esc(e.level)} · {esc(e.name)} ({esc(e.at)})" for e in events[:DIAGNOSIS_SHOWN]
    )
    more = f"; and {len(events) - DIAGNOSIS_SHOWN} more" if len(events) > DIAGNOSIS_SHOWN else ""
    return f":stethoscope: *DBbrain diagnosis, last hour:* {shown}{more}"
