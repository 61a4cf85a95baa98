"""Pure Block Kit builders: the request card, the modal, and replies. No I/O, easy to assert on.

Anything a user typed is escaped before it goes into mrkdwn, so a reason cannot ping @channel.
"""

from __future__ import annotations

from bot.killtask import PRODUCT_NAMES as PRODUCTS
from bot.killtask import (
    broad_reason,
    describe_duration,
    describe_filters,
)
from bot.outcomes import KillResult
from bot.preview import Preview
from bot.requests import KillRequest, State
from bot.rules import Requirement
from bot.slack import insight
from bot.slack.mrkdwn import code, esc, mention, mention_any, when

ACTIONS_BLOCK = "request_actions"
MAX_SECTION = 2900  # Slack allows 3000 characters in a section's text

STATE_TITLES = {
    State.PENDING: (":hourglass_flowing_sand:", "Waiting for approval"),
    State.APPROVED: (":white_check_mark:", "Approved"),
    State.STARTING: (":arrows_counterclockwise:", "Approved, starting"),
    State.RUNNING: (":large_green_circle:", "Running"),
    State.FAILED: (":x:", "Failed"),
    State.UNKNOWN: (":warning:", "Outcome unknown"),
    State.REJECTED: (":no_entry_sign:", "Rejected"),
    State.EXPIRED: (":alarm_clock:", "Expired"),
    State.STOPPED: (":octagonal_sign:", "Stopped"),
    State.FINISHED: (":checkered_flag:", "Finished"),
}


def text_object(kind: str, text: str) -> dict:
    return {"type": kind, "text": text[:MAX_SECTION]}


def section(text: str) -> dict:
    return {"type": "section", "text": text_object("mrkdwn", text)}


def _fields(*pairs: tuple[str, str]) -> dict:
    return {
        "type": "section",
        "fields": [text_object("mrkdwn", f"*{label}*\n{value}") for label, value in pairs if value],
    }


def button(label: str, action_id: str, value: str, style: str | None = None) -> dict:
    made = {
        "type": "button",
        "text": text_object("plain_text", label),
        "action_id": action_id,
        "value": value,
    }
    if style:
        made["style"] = style
    return made


CONFIRM_TEXT = 300  # Slack refuses a whole message or view whose confirm text is longer


def confirm_dialog(title: str, text: str, yes: str, style: str = "primary") -> dict:
    if len(text) > CONFIRM_TEXT:  # long filters: cut at a word, so no entity is split
        text = text[: CONFIRM_TEXT - 1].rsplit(" ", 1)[0] + "…"
    return {
        "title": text_object("plain_text", title),
        "text": text_object("mrkdwn", text),
        "confirm": text_object("plain_text", yes),
        "deny": text_object("plain_text", "Cancel"),
        "style": style,
    }


# ---------------------------------------------------------------- the request card


def title_of(request: KillRequest) -> str:
    """The state's title, or what a one-shot kill did."""
    once = insight.once_title(request) if request.spec.once else None
    return once or STATE_TITLES[request.state][1]


def card_text(request: KillRequest) -> str:
    """The notification text of the card (also what screen readers announce)."""
    title = title_of(request)
    return f"Kill-task request #{request.id} on {esc(request.spec.instance_id)}: {title}"


def where(request: KillRequest) -> str:
    """The request's account and region, as the card and the list show them."""
    return f"`{esc(request.account or 'default')}` · `{esc(request.region or 'unknown')}`"


def card(request: KillRequest, requirement: Requirement | int = 1) -> list[dict]:
    spec = request.spec
    emoji, title = STATE_TITLES[request.state][0], title_of(request)
    blocks: list[dict] = [
        {
            "type": "header",
            "text": text_object("plain_text", f"{emoji} Kill-task request #{request.id} · {title}"),
        }
    ]
    broad = broad_reason(spec)
    if broad:
        blocks.append(
            section(
                f":rotating_light: *Wide request: {esc(broad)}.* Only a role with `kill_all` "
                "may file or approve it."
            )
        )
    if request.break_glass:
        blocks.append(section(":rotating_light: *Break-glass: this request skipped approval.*"))
    pairs = [
        ("Instance", f"`{esc(spec.instance_id)}`"),
        ("Product", f"{PRODUCTS[spec.product]} (`{spec.product}`)"),
        ("Duration", _duration_line(request)),
        ("Requested by", mention(request.requester_id)),
    ]
    if request.account or request.region:
        pairs.append(("Account · region", where(request)))
    blocks.append(_fields(*pairs))
    blocks.append(section(f"*Kills* {esc(describe_filters(spec))}"))
    if spec.reason:
        blocks.append(section(f"*Reason:* {esc(spec.reason)}"))
    if request.preview and request.state in (
        State.PENDING,
        State.APPROVED,
        State.STARTING,
        State.RUNNING,
    ):
        blocks.append(section(preview_text(Preview.from_dict(request.preview))))
    elif request.state is State.PENDING:
        blocks.append(section("_Reading the instance's live sessions…_"))
    if isinstance(requirement, int):
        requirement = Requirement(requirement)
    blocks.extend(_state_blocks(request, requirement))
    return blocks


def preview_text(preview: Preview) -> str:
    """The live preview in a few lines; always under a section's 3,000 characters."""
    if preview.error:
        read = when(preview.read_at)
        return f":grey_question: *Live preview unavailable* ({read}): {esc(preview.error)}"
    noun = "session matches" if preview.matched == 1 else "sessions match"
    more = "+" if preview.truncated else ""
    lines = [
        f"*Live preview* · read {when(preview.read_at)}",
        f"*{preview.matched}{more} {noun} right now* (of {preview.read}{more} read)",
    ]
    if preview.truncated:
        lines.append(
            ":warning: DBbrain returned only the first "
            f"{preview.read} sessions; the real numbers may be higher, and the counts below "
            "cover only those (DBbrain gives no totals by account or host)."
        )
    if preview.lock:
        lines.append(insight.lock_text(preview.lock, preview.matched))
    if preview.protected:
        accounts = ", ".join(f"{esc(user)} ({n})" for user, n in preview.protected)
        lines.append(
            f":warning: *Protected accounts match these filters:* {accounts}. DBbrain would "
            "kill their sessions too; narrow the filters (e.g. user=)."
        )
    for label, pairs in (
        ("By account", preview.by_user),
        ("By client host", preview.by_host),
        ("By database", preview.by_db),
        ("By command", preview.by_command),
        ("By state", preview.by_state),
    ):
        if pairs:
            lines.append(f"{label}: " + " · ".join(f"{esc(k)} {n}" for k, n in pairs))
    if preview.longest:
        lines.append("*Longest running:*")
        for s in preview.longest:
            statement = "" if s.statement is None else f" — `{code(s.statement)}`"
            lines.append(
                f"• {s.time} s · #{esc(s.id)} {esc(s.user)}@{esc(s.host)} "
                f"{esc(s.db or '-')} {esc(s.command)}{statement}"
            )
    diagnosis = insight.diagnosis_text(preview.diagnosis, preview.diagnosis_error)
    if diagnosis:
        lines.append(diagnosis)
    text = "\n".join(lines)
    return text if len(text) <= MAX_SECTION else text[: MAX_SECTION - 1] + "…"


def _duration_line(request: KillRequest) -> str:
    spec = request.spec
    length = describe_duration(spec.duration)
    if spec.until_stopped:
        return "Until stopped by hand"
    if spec.once:
        return "Once, right after approval (KillMySqlThreads)"
    if request.state is State.STOPPED:
        return f"{length}, stopped early by hand"
    if request.started_at is not None and request.ends_at is not None:
        return f"{length}, ends {when(request.ends_at)}"
    return f"{length} from the moment it starts"


def needs_text(missing: int, requirement: Requirement) -> str:
    """ "needs 1 more approval from @dba": who still has to approve, and the rule that says so."""
    who = "someone other than the requester"
    if requirement.from_:
        who = " who is also in ".join(mention_any(ids) for ids in requirement.from_)
    rule = ""
    if requirement.because:
        rule = " (rule: " + "; ".join(esc(b) for b in requirement.because) + ")"
    return f"Needs {missing} more approval{'s' if missing != 1 else ''} from {who}{rule}."


def _state_blocks(request: KillRequest, requirement: Requirement) -> list[dict]:
    required = requirement.required
    state = request.state
    rid = str(request.id)
    approved_by = ", ".join(mention(u) for u in request.approvers)
    if state is State.PENDING:
        missing = max(0, required - len(request.approvers))
        so_far = f" Approved so far by {approved_by}." if approved_by else ""
        if missing == 0:
            return [section(f"Approved by {approved_by}. Starting…")]
        how_long = (
            "once, now" if request.spec.once else f"for {describe_duration(request.spec.duration)}"
        )
        confirm_text = (
            f"DBbrain will kill {esc(describe_filters(request.spec))} on "
            f"`{esc(request.spec.instance_id)}` {how_long}."
        )
        return [
            {
                "type": "context",
                "elements": [
                    text_object(
                        "mrkdwn",
                        f"{needs_text(missing, requirement)}{so_far} "
                        f"Expires {when(request.expires_at)}.",
                    )
                ],
            },
            {
                "type": "actions",
                "block_id": ACTIONS_BLOCK,
                "elements": [
                    {
                        **button("Approve", "approve", rid, "primary"),
                        "confirm": confirm_dialog(
                            "Approve this kill task?", confirm_text, "Approve"
                        ),
                    },
                    button("Reject", "reject", rid, "danger"),
                    button("Refresh preview", "refresh_preview", rid),
                ],
            },
        ]
    if state is State.APPROVED:
        return [section(f"Approved by {mention(request.decided_by)}. Starting…")]
    if state is State.STARTING:
        return [section(f"Approved by {mention(request.decided_by)}. Sending to DBbrain…")]
    effect = insight.effect_line(request)
    shown = [section(effect)] if effect else []
    if request.kill_result:
        result = KillResult.from_dict(request.kill_result)
        shown = [section(insight.kill_result_text(result, unknown=state is State.UNKNOWN))]
    if state is State.RUNNING:
        ends = "until stopped by hand" if request.ends_at is None else when(request.ends_at)
        return [
            *shown,
            _fields(
                ("DBbrain RequestId", f"`{esc(request.cloud_request_id)}`"),
                ("Approved by", approved_by or mention(request.decided_by)),
                ("Started", when(request.started_at)),
                ("Ends", ends),
            ),
            {
                "type": "actions",
                "block_id": ACTIONS_BLOCK,
                "elements": [
                    {
                        **button("Stop", "stop", rid, "danger"),
                        "confirm": confirm_dialog(
                            "Stop this kill task?",
                            f"DBbrain stops killing sessions on `{esc(request.spec.instance_id)}`.",
                            "Stop",
                            "danger",
                        ),
                    },
                    button("Refresh preview", "refresh_preview", rid),
                ],
            },
        ]
    if state in (State.FAILED, State.UNKNOWN):
        blocks = [section(f"*{STATE_TITLES[state][1]}:* {esc(request.error_message or '')}")]
        details = [f"Error `{esc(request.error_code)}`"]
        if request.cloud_request_id:
            details.append(f"DBbrain RequestId `{esc(request.cloud_request_id)}`")
        blocks.append({"type": "context", "elements": [text_object("mrkdwn", " · ".join(details))]})
        blocks.extend(shown)
        if state is State.UNKNOWN and not request.spec.once:
            blocks.append(
                {
                    "type": "actions",
                    "block_id": ACTIONS_BLOCK,
                    "elements": [
                        button("Stop (cancel any task on the instance)", "stop", rid, "danger")
                    ],
                }
            )
        return blocks
    if state is State.REJECTED:
        return [
            section(
                f"Rejected by {mention(request.decided_by)} {when(request.decided_at)}. "
                "Nothing was killed."
            )
        ]
    if state is State.EXPIRED:
        return [
            section(
                f"Expired {when(request.expires_at)} without enough approvals. Nothing was killed."
            )
        ]
    if state is State.STOPPED:
        return [
            *shown,
            _fields(
                ("Stopped by", mention(request.stopped_by)),
                ("Stopped", when(request.stopped_at)),
                ("Started", when(request.started_at)),
                ("DBbrain RequestId", f"`{esc(request.cloud_request_id)}`"),
            ),
        ]
    # FINISHED
    return [
        *shown,
        _fields(
            ("Finished", when(request.ends_at)),
            ("Started", when(request.started_at)),
            ("DBbrain RequestId", f"`{esc(request.cloud_request_id)}`"),
        ),
    ]
