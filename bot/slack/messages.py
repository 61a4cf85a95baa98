"""Every text the bot sends besides the card: replies, thread news, and what went wrong.

The service hands over data (bot.outcomes); this module alone turns it into mrkdwn. Text that
came from outside (typed values, DBbrain's messages, even the service's own sentences, which
quote them) is escaped here; mentions are built from IDs the bot checked.
"""

from __future__ import annotations

from bot.killtask import FIELD_LABELS, USAGE, SpecError, describe_duration, describe_filters
from bot.outcomes import Announcement, CardPost, EffectSummary, Happening, Outcome
from bot.preview import Preview
from bot.requests import KillRequest
from bot.slack.blocks import STATE_TITLES, preview_text, where
from bot.slack.mrkdwn import channel_link, code, esc, mention, mention_all, mention_any, when

MAX_TEXT = 4000  # longest slash-command text the bot reads (Slack's own limit is about 4,000)
NOT_THIS_CHANNELS = (
    "That button does not match a request of this channel, so nothing was changed. "
    "Use `/killtask list` to see the open requests here."
)
NOT_FROM_A_CARD = (
    "That click does not come from a request's card, so nothing was changed. "
    "Use the buttons on the card, or `/killtask list`."
)


def outcome(result: Outcome) -> str:
    """The private answer to whoever acted."""
    return esc(result.message)


def announcement(request: KillRequest, news: Announcement) -> str:
    """One reply in the card's thread."""
    who = mention(news.actor_id)
    rid = f" DBbrain RequestId `{code(news.cloud_request_id)}`." if news.cloud_request_id else ""
    match news.what:
        case Happening.FILED | Happening.REMINDER | Happening.ESCALATION | Happening.STILL_RUNNING:
            return _nudge(request, news)
        case Happening.APPROVED:
            return f"{who} approved; the kill task starts now."
        case Happening.BREAK_GLASS:
            return (
                f":rotating_light: {who} used break-glass: this request SKIPPED APPROVAL. "
                f"Reason: {esc(news.reason or '')}"
            )
        case Happening.APPROVAL_RECORDED:
            return f"{who} approved. Waiting for {news.missing} more approval(s){_from(news)}."
        case Happening.STARTED:
            how = "used break-glass and started" if request.break_glass else "approved; started"
            seen = _seen(news.preview, request.started_at)
            return f":white_check_mark: {who} {how} the kill task{seen}.{rid}"
        case Happening.START_FAILED:
            title = "Outcome unknown" if news.outcome_unknown else "Failed"
            after = f" after {who}'s approval" if news.actor_id else ""
            return f":warning: {title}{after}. {esc(news.error or '')}"
        case Happening.REJECTED:
            return f":no_entry_sign: {who} rejected this request."
        case Happening.STOPPED:
            why = f" Reason: {esc(news.reason)}" if news.reason else ""
            return f":octagonal_sign: {who} stopped the kill task.{rid}{why}"
        case Happening.FINISHED:
            return "The kill task's duration has passed; it is finished."
        case Happening.EXPIRED:
            return "This request expired without enough approvals; nothing was killed."
    raise ValueError(f"no words for {news.what}")  # pragma: no cover - every case is above


def summary(request: KillRequest, facts: EffectSummary, chart: str | None) -> str:
    """The end-of-task summary. `chart` is None when a chart was uploaded above, else why
    there is none, in words."""
    approved = ", ".join(mention(u) for u in facts.approvers) or "nobody recorded"
    more = "+" if facts.truncated else ""
    if facts.kill is not None:
        kill = facts.kill
        after = "not read" if kill.after is None else str(kill.after)
        return (
            f":bar_chart: *Summary of one-shot kill #{request.id}* on "
            f"`{code(request.spec.instance_id)}`: killed {kill.killed} of {kill.matched} "
            f"matching sessions. Matching sessions before: {kill.matched}, after: {after}. "
            f"Approved by {approved}."
        )
    verb = "was stopped" if facts.how is Happening.STOPPED else "finished"
    # At least 1 s: describe_duration(0) means a one-shot kill, not a short run.
    seconds = None if facts.ran_seconds is None else max(1, round(facts.ran_seconds))
    ran = "" if seconds is None else f" after {describe_duration(seconds)}"
    lines = [
        f":bar_chart: *Summary of kill task #{request.id}* on "
        f"`{code(request.spec.instance_id)}`: it {verb}{ran}. Approved by {approved}."
    ]
    if facts.samples:
        lines.append(
            f"Matching sessions: {facts.start}{more} at the start, peak {facts.peak}{more}, "
            f"{facts.end}{more} at the end ({facts.samples} sample"
            f"{'s' if facts.samples != 1 else ''}). DBbrain reports no kill count for a kill "
            "task; these are the bot's own reads."
        )
    else:
        lines.append("The matching sessions could not be read while it ran, so there is no trend.")
    if facts.truncated:
        lines.append("Some reads were cut at their limit, so these counts are lower bounds.")
    if chart is None:
        lines.append("The chart of matching sessions over time is above.")
    elif chart:
        lines.append(esc(chart))
    return "\n".join(lines)


def _from(news: Announcement) -> str:
    return "".join(f" from {mention_any(ids)}" for ids in news.needed_from[:1]) + "".join(
        f" who is also in {mention_any(ids)}" for ids in news.needed_from[1:]
    )


def _nudge(request: KillRequest, news: Announcement) -> str:
    """Filing, reminder, escalation, "still running": every mention from policy or record IDs."""
    who = mention_all(news.mentions)
    ask = f"{who}: " if who else ""
    needs = f"{news.missing} approval{'s' if news.missing != 1 else ''}{_from(news)}"
    instance = f"`{code(request.spec.instance_id)}`"
    if news.what is Happening.FILED:
        return (
            f"{ask}{mention(news.actor_id)} asks for a kill task on {instance}; it needs {needs}."
        )
    if news.what is Happening.REMINDER:
        return f":bell: {ask}request #{request.id} on {instance} is still waiting for {needs}."
    if news.what is Happening.ESCALATION:
        return (
            f":rotating_light: {ask}request #{request.id} on {instance} has had no decision "
            f"since {when(request.created_at)}; it still needs {needs}. Approve or reject it."
        )
    return (
        f":hourglass: {ask}still killing on {instance} since {when(request.started_at)} "
        f"({esc(describe_filters(request.spec))}). Stop it on the card once it is no longer needed."
    )


DIRECT_NEWS = {
    Happening.APPROVED: "was approved by {who}; the kill task starts now",
    Happening.REJECTED: "was rejected by {who}; nothing was killed",
    Happening.EXPIRED: "expired without enough approvals; nothing was killed",
    Happening.STARTED: "is running: DBbrain is killing the matching sessions",
    Happening.START_FAILED: "did not start: {error}",
    Happening.FINISHED: "is finished: its duration has passed",
    Happening.STOPPED: "was stopped by {who}",
}


def direct(request: KillRequest, news: Announcement, link: str | None) -> str:
    """The requester's direct message about their request, with a link to its card."""
    template = DIRECT_NEWS[news.what]
    error = esc(news.error or "DBbrain refused it")
    if news.outcome_unknown:
        error = f"the outcome is unknown ({esc(news.error or '')}); look at the card"
    said = template.format(who=mention(news.actor_id), error=error)
    card = f"<{esc(link)}|its card>" if link else f"the card in {channel_link(request.channel_id)}"
    return (
        f"Your kill-task request #{request.id} on `{code(request.spec.instance_id)}` {said}. "
        f"See {card}."
    )


def _seen(preview: Preview | None, started_at: float | None) -> str:
    if preview is None or preview.error:
        return " (the live preview could not be read just before)"
    more = "+" if preview.truncated else ""
    noun = "session" if preview.matched == 1 else "sessions"
    age = max((started_at or preview.read_at) - preview.read_at, 0.0)
    when = "just before" if age < 2 else f"{age:.0f} s before"
    return f" with {preview.matched}{more} matching {noun} seen {when}"


def card_problem(request: KillRequest, card: CardPost) -> str | None:
    """What the requester must know when the card did not reach the channel, if anything."""
    if card.ts:
        return None
    where = channel_link(request.channel_id)
    if card.error in ("not_in_channel", "channel_not_found"):
        return (
            f"Request #{request.id} is filed, but I cannot post its card in {where}: I am not "
            "a member there. Invite me with `/invite @killtask` in that channel; the card "
            "appears within a minute after that."
        )
    if card.error == "is_archived":
        return (
            f"Request #{request.id} is filed, but {where} is archived, so its card cannot be "
            "posted and nobody can approve it there. It will expire on its own; file again in "
            "a channel that is in use."
        )
    if card.unknown:
        return (
            f"Request #{request.id} is filed, but Slack gave no clear answer when I posted its "
            f"card ({esc(card.error or 'no answer')}). If the card is not in the channel, I "
            "will post it within a minute, and never twice."
        )
    return (
        f"Request #{request.id} is filed, but Slack refused its card just now "
        f"({esc(card.error or 'no reason given')}). I will try again within a minute."
    )


def spec_error(error: SpecError) -> str:
    lines = [
        f"• *{esc(FIELD_LABELS.get(name, name))}* (`{code(name)}`): {esc(problem)}"
        for name, problem in error.errors.items()
    ]
    return "I could not file that:\n" + "\n".join(lines) + f"\nUsage: `{code(USAGE)}`"


def unknown_option(flag: str) -> str:
    return f"Unknown option `--{code(flag)}`; the only option is `--break-glass`."


def too_long(length: int) -> str:
    return (
        f"That command is {length:,} characters long; I read at most {MAX_TEXT:,}. "
        "Nothing was filed. Shorten the reason or the filters and try again."
    )


def preview_reply(instance_id: str, filters: str, result: Outcome) -> str:
    if result.preview is None:
        return outcome(result)
    return (
        f"Preview for `{code(instance_id)}`, {esc(filters)} (nothing was filed):\n"
        + preview_text(result.preview)
    )


def help_text() -> str:
    return (
        "*/killtask* asks DBbrain to keep killing matching MySQL sessions (or, with "
        "`duration=once`, to kill the ones there now, once), after a second person approves.\n"
        f"• File a request: `{code(USAGE)}`\n"
        "• `/killtask` alone opens a form.\n"
        "• `/killtask preview &lt;InstanceId&gt; key=value …`: what those filters would kill "
        "right now, filing nothing.\n"
        "• `/killtask list`: this channel's pending and running tasks.\n"
        '• `/killtask stop &lt;InstanceId&gt; [product=cynosdb] [reason="..."]`: stop a '
        "running task.\n"
        "Every filter must hold (AND); `info` is a statement prefix; `time` is a minimum in "
        "seconds. Values with spaces need quotes."
    )


def card_link(request: KillRequest, permalink: str | None) -> str:
    """The thread reply under an alert that a request was filed from."""
    card = f"request #{request.id}"
    if permalink and permalink.startswith("https://") and not set(permalink) & set("<>| "):
        card = f"<{esc(permalink)}|{card}>"
    return (
        f"{mention(request.requester_id)} filed kill-task {card} for "
        f"`{code(request.spec.instance_id)}` from this message; its card is in this channel."
    )


def list_text(requests: list[KillRequest]) -> str:
    if not requests:
        return "No pending or running kill tasks in this channel."
    lines = ["*Open kill tasks in this channel:*"]
    for request in requests:
        _, title = STATE_TITLES[request.state]
        lines.append(
            f"• #{request.id} `{code(request.spec.instance_id)}` · {title} · {where(request)} · "
            f"{esc(describe_filters(request.spec))} · by {mention(request.requester_id)}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- when something broke


def store_down(what_was_not_done: str) -> str:
    return (
        f"The bot's database did not answer, so {what_was_not_done}. Nothing else changed. "
        "Try again in a moment; if it keeps happening, tell whoever runs the bot."
    )


AFTER_ACK_FAILURES = {
    "file": (
        "Request #{id} is filed and kept safe, but the bot hit a problem ({why}) while posting "
        "its card or reading its preview. It will finish both within a minute on its own."
    ),
    "approve": (
        "Your approval of request #{id} is recorded, but the bot hit a problem ({why}) before "
        "it could finish. Within a minute or two the card will show the task running or say "
        "plainly that the outcome is unknown; it is never sent twice."
    ),
    "reject": (
        "Request #{id} is rejected, but the bot hit a problem ({why}) while updating its card; "
        "the card will catch up on its own."
    ),
    "stop": (
        "Your stop of request #{id} did not finish: the bot hit a problem ({why}). The kill "
        "task may still be running: press Stop again, or use `/killtask stop`."
    ),
    "refresh_preview": "Could not refresh the preview of request #{id} ({why}); try again.",
    "stop_instance": (
        "Your stop did not finish: the bot hit a problem ({why}). The kill task may still be "
        "running: try `/killtask stop` again, or stop it in the DBbrain console."
    ),
    "preview": "Could not read the preview ({why}); nothing was filed. Try again.",
    "list": "Could not list this channel's kill tasks ({why}); try again.",
}


def after_ack_failed(kind: str, request_id: int | None, why: str) -> str:
    template = AFTER_ACK_FAILURES.get(kind, "Something went wrong ({why}); try again.")
    return template.format(id=request_id if request_id is not None else "?", why=esc(why))
