"""The form `/killtask` opens: its blocks, and reading what was submitted. No I/O here."""

from __future__ import annotations

import json
import re

from bot.killtask import MYSQL_COMMANDS, PROTECTED_COMMANDS
from bot.killtask import PRODUCT_NAMES as PRODUCTS
from bot.slack.blocks import section, text_object
from bot.slack.mrkdwn import is_channel_id

MODAL_CALLBACK = "killtask_file"
INSTANCE_PICKER = "instance"  # the external_select's action_id: its options come from the bot
_TS_RE = re.compile(r"^[0-9]{9,11}\.[0-9]{1,7}$")

DURATION_CHOICES = (
    ("60", "1 minute"),
    ("300", "5 minutes"),
    ("600", "10 minutes"),
    ("1800", "30 minutes"),
    ("3600", "1 hour"),
    ("7200", "2 hours"),
    ("21600", "6 hours"),
    ("until-stopped", "Until stopped by hand"),
    ("once", "Once: kill the matching sessions now"),
)


def _input(block_id: str, label: str, element: dict, optional: bool, hint: str = "") -> dict:
    block = {
        "type": "input",
        "block_id": block_id,
        "label": text_object("plain_text", label),
        "element": {**element, "action_id": "value"},
        "optional": optional,
    }
    if hint:
        block["hint"] = text_object("plain_text", hint)
    return block


def _option(value: str, label: str) -> dict:
    return {"text": text_object("plain_text", label), "value": value}


def _plain(placeholder: str, multiline: bool = False) -> dict:
    element = {"type": "plain_text_input", "placeholder": text_object("plain_text", placeholder)}
    if multiline:
        element["multiline"] = True
    return element


def _instance_picker(instance_id: str | None) -> dict:
    element = {
        "type": "external_select",
        "action_id": INSTANCE_PICKER,
        "min_query_length": 0,
        "placeholder": text_object("plain_text", "Type a name or an ID"),
    }
    if instance_id:
        element["initial_option"] = _option(instance_id, instance_id[:75])
    return {
        "type": "input",
        "block_id": "instance_id",
        "label": text_object("plain_text", "Instance"),
        "element": element,
        "optional": False,
        "hint": text_object(
            "plain_text", "Instances DBbrain lists that your roles allow: name, ID, region, health."
        ),
    }


def modal(channel_id: str, instance_id: str | None = None, thread_ts: str | None = None) -> dict:
    """The form. From a message shortcut it names the message's instance, and `thread_ts`
    says where to link the card from."""
    metadata: dict[str, str] = {"channel_id": channel_id}
    if thread_ts:
        metadata["thread_ts"] = thread_ts
    products = [_option(value, f"{name} ({value})") for value, name in PRODUCTS.items()]
    durations = [_option(value, label) for value, label in DURATION_CHOICES]
    commands = [_option(c, c) for c in MYSQL_COMMANDS if c not in PROTECTED_COMMANDS]
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK,
        "private_metadata": json.dumps(metadata),
        "title": text_object("plain_text", "Kill sessions"),
        "submit": text_object("plain_text", "File request"),
        "close": text_object("plain_text", "Cancel"),
        "blocks": [
            section(
                "DBbrain will keep killing sessions that match *all* the filters below (or "
                "kill them once, with How long: Once), after someone else approves."
            ),
            _instance_picker(instance_id),
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
        elements = list((actions or {}).values()) if isinstance(actions, dict) else []
        element = elements[0] if elements and isinstance(elements[0], dict) else {}
        kind = element.get("type")
        if kind in ("static_select", "external_select"):
            fields[block_id] = (element.get("selected_option") or {}).get("value")
        elif kind == "multi_static_select":
            fields[block_id] = [o.get("value") for o in element.get("selected_options") or []]
        else:
            fields[block_id] = element.get("value")
    return fields


def modal_thread(private_metadata: str) -> str | None:
    """The ts of the message the form was opened from (message shortcut), if it looks like one."""
    try:
        ts = json.loads(private_metadata or "{}").get("thread_ts")
    except (ValueError, AttributeError, TypeError):
        return None
    return ts if isinstance(ts, str) and _TS_RE.match(ts) else None


def modal_channel(private_metadata: str) -> str | None:
    """The channel the form was opened from, only if it looks like a channel ID."""
    try:
        channel = json.loads(private_metadata or "{}").get("channel_id")
    except (ValueError, AttributeError, TypeError):
        return None
    return channel if isinstance(channel, str) and is_channel_id(channel) else None
