"""Block Kit limits that Slack enforces by refusing the whole message or view."""

from __future__ import annotations

from bot.home import HomeLists
from bot.killtask import build_spec
from bot.requests import KillRequest, State
from bot.slack.blocks import CONFIRM_TEXT, card
from bot.slack.home import home_view

LONG = {
    "instance_id": "cdb-abc12345", "duration": "10m", "user": "app", "host": "10.0.0.5",
    "db": "orders,billing", "command": "Query", "info": "SELECT <b> & " + "x" * 140,
}  # fmt: skip


def confirms(blocks: list[dict]) -> list[str]:
    return [
        element["confirm"]["text"]["text"]
        for block in blocks
        for element in block.get("elements", [])
        if "confirm" in element
    ]


def test_confirm_texts_stay_within_slacks_300_characters_with_long_filters() -> None:
    spec = build_spec(LONG, frozenset())
    pending = KillRequest(7, "C1", "U0REQ", spec, State.PENDING, 0.0, 600.0, message_ts="1.2")
    running = KillRequest(8, "C1", "U0REQ", spec, State.RUNNING, 0.0, 600.0, message_ts="1.3")
    view = home_view(HomeLists(member=True, waiting=[pending], running=[(running, True)]))
    texts = confirms(card(pending)) + confirms(view["blocks"])
    assert len(texts) == 3
    for text in texts:
        assert len(text) <= CONFIRM_TEXT, text
        assert "<b>" not in text  # still escaped after the cut
    assert texts[0].endswith("…") and texts[1].endswith("…")  # the long ones were cut
