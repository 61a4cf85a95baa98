"""Pure Block Kit builders: the request card, the modal, and replies. No I/O, easy to assert on.

Anything a user typed is escaped before it goes into mrkdwn, so a reason cannot ping @channel.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bot.killtask import (
    FIELD_LABELS,
    MYSQL_COMMANDS,
    PROTECTED_COMMANDS,
    USAGE,
    SpecError,
    broad_reason,
    describe_duration,
    describe_filters,
)
from bot.killtask import PRODUCT_NAMES as PRODUCTS
from bot.preview import Preview
from bot.requests import KillRequest, State

MODAL_CALLBACK = "killtask_file"
ACTIONS_BLOCK = "request_actions"
MAX_SECTION = 2900  # Slack allows 3000 characters in a section's text

STATE_TITLES = {
    State.PENDING: (":hourglass_flowing_sand:", "Waiting for approval"),
    State.STARTING: (":arrows_counterclockwise:", "Approved, starting"),
    State.RUNNING: (":large_green_circle:", "Running"),
    State.FAILED: (":x:", "Failed"),
    State.UNKNOWN: (":warning:", "Outcome unknown"),
    State.REJECTED: (":no_entry_sign:", "Rejected"),
    State.EXPIRED: (":alarm_clock:", "Expired"),
    State.STOPPED: (":octagonal_sign:", "Stopped"),
    State.FINISHED: (":checkered_flag:", "Finished"),
}

DURATION_CHOICES = (
    ("60", "1 minute"),
    ("300", "5 minutes"),
    ("600", "10 minutes"),
    ("1800", "30 minutes"),
    ("3600", "1 hour"),
    ("7200", "2 hours"),
    ("21600", "6 hours"),
    ("until-stopped", "Until stopped by hand"),
)


def esc(text: object) -> str:
    """Escape user text for mrkdwn: Slack reads <…> as links and mentions."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def when(epoch: float | None) -> str:
    """A time each reader sees in their own time zone, with a UTC fallback."""
    if epoch is None:
        return "—"
    fallback = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(epoch)}^{{date_short_pretty}} {{time_secs}}|{fallback}>"


def _text(kind: str, text: str) -> dict:
    return {"type": kind, "text": text[:MAX_SECTION]}


def _section(text: str) -> dict:
    return {"type": "section", "text": _text("mrkdwn", text)}


def _fields(*pairs: tuple[str, str]) -> dict:
    return {
        "type": "section",
        "fields": [_text("mrkdwn", f"*{label}*\n{value}") for label, value in pairs if value],
    }


def _button(label: str, action_id: str, value: str, style: str | None = None) -> dict:
    button = {
        "type": "button",
        "text": _text("plain_text", label),
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _confirm(title: str, text: str, yes: str, style: str = "primary") -> dict:
    return {
        "title": _text("plain_text", title),
        "text": _text("mrkdwn", text),
        "confirm": _text("plain_text", yes),
        "deny": _text("plain_text", "Cancel"),
        "style": style,
    }


# ---------------------------------------------------------------- the request card


def card_text(request: KillRequest) -> str:
    """The notification text of the card (also what screen readers announce)."""
    _, title = STATE_TITLES[request.state]
    return f"Kill-task request #{request.id} on {request.spec.instance_id}: {title}"


def card(request: KillRequest, approvals_required: int = 1) -> list[dict]:
    spec = request.spec
    emoji, title = STATE_TITLES[request.state]
    blocks: list[dict] = [
        {
            "type": "header",
            "text": _text("plain_text", f"{emoji} Kill-task request #{request.id} · {title}"),
        }
    ]
    broad = broad_reason(spec)
    if broad:
        blocks.append(
            _section(
                f":rotating_light: *Wide request: {esc(broad)}.* Only a role with `kill_all` "
                "may file or approve it."
            )
        )
    if request.break_glass:
        blocks.append(_section(":rotating_light: *Break-glass: this request skipped approval.*"))
    blocks.append(
        _fields(
            ("Instance", f"`{esc(spec.instance_id)}`"),
            ("Product", f"{PRODUCTS[spec.product]} (`{spec.product}`)"),
            ("Duration", _duration_line(request)),
            ("Requested by", f"<@{request.requester_id}>"),
        )
    )
    blocks.append(_section(f"*Kills* {esc(describe_filters(spec))}"))
    if spec.reason:
        blocks.append(_section(f"*Reason:* {esc(spec.reason)}"))
    if request.preview and request.state in (State.PENDING, State.STARTING, State.RUNNING):
        blocks.append(_section(preview_text(Preview.from_dict(request.preview))))
    elif request.state is State.PENDING:
        blocks.append(_section("_Reading the instance's live sessions…_"))
    blocks.extend(_state_blocks(request, approvals_required))
    return blocks


def _code(text: str) -> str:
    """Text safe inside `…`: escaped, and no backtick to end the span early."""
    return esc(text.replace("`", "'"))


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
            f"{preview.read} sessions; the real numbers may be higher."
        )
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
    ):
        if pairs:
            lines.append(f"{label}: " + " · ".join(f"{esc(k)} {n}" for k, n in pairs))
    if preview.longest:
        lines.append("*Longest running:*")
        for s in preview.longest:
            statement = "" if s.statement is None else f" — `{_code(s.statement)}`"
            lines.append(
                f"• {s.time} s · #{esc(s.id)} {esc(s.user)}@{esc(s.host)} "
                f"{esc(s.db or '-')} {esc(s.command)}{statement}"
            )
    text = "\n".join(lines)
    return text if len(text) <= MAX_SECTION else text[: MAX_SECTION - 1] + "…"


def _duration_line(request: KillRequest) -> str:
    spec = request.spec
    length = describe_duration(spec.duration)
    if spec.until_stopped:
        return "Until stopped by hand"
    if request.state is State.STOPPED:
        return f"{length}, stopped early by hand"
    if request.started_at is not None and request.ends_at is not None:
        return f"{length}, ends {when(request.ends_at)}"
    return f"{length} from the moment it starts"


def _state_blocks(request: KillRequest, required: int) -> list[dict]:
    state = request.state
    rid = str(request.id)
    approved_by = ", ".join(f"<@{u}>" for u in request.approvers)
    if state is State.PENDING:
        missing = max(0, required - len(request.approvers))
        so_far = f" Approved so far by {approved_by}." if approved_by else ""
        if missing == 0:
            return [_section(f"Approved by {approved_by}. Checking the sessions, then starting…")]
        confirm_text = (
            f"DBbrain will kill {esc(describe_filters(request.spec))} on "
            f"`{esc(request.spec.instance_id)}` for {describe_duration(request.spec.duration)}."
        )
        return [
            {
                "type": "context",
                "elements": [
                    _text(
                        "mrkdwn",
                        f"Needs {missing} more approval{'s' if missing != 1 else ''} from "
                        f"someone other than the requester.{so_far} "
                        f"Expires {when(request.expires_at)}.",
                    )
                ],
            },
            {
                "type": "actions",
                "block_id": ACTIONS_BLOCK,
                "elements": [
                    {
                        **_button("Approve", "approve", rid, "primary"),
                        "confirm": _confirm("Approve this kill task?", confirm_text, "Approve"),
                    },
                    _button("Reject", "reject", rid, "danger"),
                    _button("Refresh preview", "refresh_preview", rid),
                ],
            },
        ]
    if state is State.STARTING:
        return [_section(f"Approved by <@{request.decided_by}>. Sending to DBbrain…")]
    if state is State.RUNNING:
        ends = "until stopped by hand" if request.ends_at is None else when(request.ends_at)
        return [
            _fields(
                ("DBbrain RequestId", f"`{esc(request.cloud_request_id)}`"),
                ("Approved by", approved_by or f"<@{request.decided_by}>"),
                ("Started", when(request.started_at)),
                ("Ends", ends),
            ),
            {
                "type": "actions",
                "block_id": ACTIONS_BLOCK,
                "elements": [
                    {
                        **_button("Stop", "stop", rid, "danger"),
                        "confirm": _confirm(
                            "Stop this kill task?",
                            f"DBbrain stops killing sessions on `{esc(request.spec.instance_id)}`.",
                            "Stop",
                            "danger",
                        ),
                    },
                    _button("Refresh preview", "refresh_preview", rid),
                ],
            },
        ]
    if state in (State.FAILED, State.UNKNOWN):
        blocks = [_section(f"*{STATE_TITLES[state][1]}:* {esc(request.error_message or '')}")]
        details = [f"Error `{esc(request.error_code)}`"]
        if request.cloud_request_id:
            details.append(f"DBbrain RequestId `{esc(request.cloud_request_id)}`")
        blocks.append({"type": "context", "elements": [_text("mrkdwn", " · ".join(details))]})
        if state is State.UNKNOWN:
            blocks.append(
                {
                    "type": "actions",
                    "block_id": ACTIONS_BLOCK,
                    "elements": [
                        _button("Stop (cancel any task on the instance)", "stop", rid, "danger")
                    ],
                }
            )
        return blocks
    if state is State.REJECTED:
        return [
            _section(
                f"Rejected by <@{request.decided_by}> {when(request.decided_at)}. "
                "Nothing was killed."
            )
        ]
    if state is State.EXPIRED:
        return [
            _section(
                f"Expired {when(request.expires_at)} without enough approvals. Nothing was killed."
            )
        ]
    if state is State.STOPPED:
        return [
            _fields(
                ("Stopped by", f"<@{request.stopped_by}>"),
                ("Stopped", when(request.stopped_at)),
                ("Started", when(request.started_at)),
                ("DBbrain RequestId", f"`{esc(request.cloud_request_id)}`"),
            )
        ]
    # FINISHED
    return [
        _fields(
            ("Finished", when(request.ends_at)),
            ("Started", when(request.started_at)),
            ("DBbrain RequestId", f"`{esc(request.cloud_request_id)}`"),
        )
    ]


# ---------------------------------------------------------------- replies


def help_text() -> str:
    return (
        "*/killtask* asks DBbrain to keep killing matching MySQL sessions, after a second "
        "person approves.\n"
        f"• File a request: `{USAGE}`\n"
        "• `/killtask` alone opens a form.\n"
        "• `/killtask preview <InstanceId> key=value …`: what those filters would kill right "
        "now, filing nothing.\n"
        "• `/killtask list`: this channel's pending and running tasks.\n"
        '• `/killtask stop <InstanceId> [product=cynosdb] [reason="..."]`: stop a running task.\n'
        "Every filter must hold (AND); `info` is a statement prefix; `time` is a minimum in "
        "seconds. Values with spaces need quotes."
    )


def spec_error_text(error: SpecError) -> str:
    lines = [
        f"• *{FIELD_LABELS.get(name, name)}* (`{name}`): {esc(problem)}"
        for name, problem in error.errors.items()
    ]
    return "I could not file that:\n" + "\n".join(lines) + f"\nUsage: `{USAGE}`"


def list_text(requests: list[KillRequest]) -> str:
    if not requests:
        return "No pending or running kill tasks in this channel."
    lines = ["*Open kill tasks in this channel:*"]
    for request in requests:
        _, title = STATE_TITLES[request.state]
        lines.append(
            f"• #{request.id} `{esc(request.spec.instance_id)}` · {title} · "
            f"{esc(describe_filters(request.spec))} · by <@{request.requester_id}>"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- the modal


def _input(block_id: str, label: str, element: dict, optional: bool, hint: str = "") -> dict:
    block = {
        "type": "input",
        "block_id": block_id,
        "label": _text("plain_text", label),
        "element": {**element, "action_id": "value"},
        "optional": optional,
    }
    if hint:
        block["hint"] = _text("plain_text", hint)
    return block


def _option(value: str, label: str) -> dict:
    return {"text": _text("plain_text", label), "value": value}


def _plain(placeholder: str, multiline: bool = False) -> dict:
    element = {"type": "plain_text_input", "placeholder": _text("plain_text", placeholder)}
    if multiline:
        element["multiline"] = True
    return element


def modal(channel_id: str) -> dict:
    products = [_option(value, f"{name} ({value})") for value, name in PRODUCTS.items()]
    durations = [_option(value, label) for value, label in DURATION_CHOICES]
    commands = [_option(c, c) for c in MYSQL_COMMANDS if c not in PROTECTED_COMMANDS]
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK,
        "private_metadata": json.dumps({"channel_id": channel_id}),
        "title": _text("plain_text", "Kill sessions"),
        "submit": _text("plain_text", "File request"),
        "close": _text("plain_text", "Cancel"),
        "blocks": [
            _section(
                "DBbrain will keep killing sessions that match *all* the filters below, "
                "after someone else approves."
            ),
            _input("instance_id", "Instance ID", _plain("cdb-abc12345"), False),
            _input(
                "product",
                "Product",
                {"type": "static_select", "options": products, "initial_option": products[0]},
                False,
            ),
            _input(
                "duration",
                "How long",
                {"type": "static_select", "options": durations, "initial_option": durations[2]},
                False,
            ),
            _input("user", "Account (User)", _plain("app"), True),
            _input("host", "Client host (IP)", _plain("10.0.0.5"), True, "One client IP, no port."),
            _input("db", "Databases", _plain("orders, billing"), True, "Comma separated."),
            _input(
                "command",
                "Commands",
                {"type": "multi_static_select", "options": commands},
                True,
            ),
            _input(
                "info",
                "Statement starts with",
                _plain("SELECT * FROM orders"),
                True,
                "A prefix of the SQL text (DBbrain's Info).",
            ),
            _input(
                "time",
                "Minimum session time (seconds)",
                {"type": "number_input", "is_decimal_allowed": False, "min_value": "0"},
                True,
            ),
            _input("reason", "Reason", _plain("What is happening and why this helps", True), True),
        ],
    }


def modal_fields(state_values: dict) -> dict[str, object]:
    """The submitted values by block_id, as the spec parser wants them."""
    fields: dict[str, object] = {}
    for block_id, actions in (state_values or {}).items():
        element = (actions or {}).get("value") or {}
        kind = element.get("type")
        if kind == "static_select":
            fields[block_id] = (element.get("selected_option") or {}).get("value")
        elif kind == "multi_static_select":
            fields[block_id] = [o.get("value") for o in element.get("selected_options") or []]
        else:
            fields[block_id] = element.get("value")
    return fields


def modal_channel(private_metadata: str) -> str | None:
    try:
        return json.loads(private_metadata or "{}").get("channel_id")
    except (ValueError, AttributeError):
        return None
