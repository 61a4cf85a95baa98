"""Block Kit and Slack mrkdwn as readable terminal text."""

from __future__ import annotations

import re

_DATE = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")
_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def plain(text: str) -> str:
    """Slack's markup as a person would read it: dates, mentions and escapes resolved."""
    text = _DATE.sub(r"\1", text)
    text = _USER.sub(r"@\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_blocks(blocks: list[dict]) -> list[str]:
    lines: list[str] = []
    for block in blocks or []:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"== {plain(block['text']['text'])} ==")
        elif kind == "section":
            if block.get("text"):
                lines.extend(plain(block["text"]["text"]).splitlines())
            for field in block.get("fields") or []:
                label, _, value = plain(field["text"]).partition("\n")
                lines.append(f"{label.strip('*')}: {value}")
        elif kind == "context":
            lines.append("  " + " ".join(plain(e.get("text", "")) for e in block["elements"]))
        elif kind == "actions":
            labels = [f"[{e['text']['text']}]" for e in block["elements"] if e.get("text")]
            lines.append("Buttons: " + " ".join(labels))
    return lines
