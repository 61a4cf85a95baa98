"""Markdown for the results: small tables, numbers in plain units."""

from __future__ import annotations

import math
from collections.abc import Sequence


def ms(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    return f"{seconds * 1000:.1f}"


def mb(kb: int | None) -> str:
    return "–" if kb is None else f"{kb / 1024:.1f}"


def ratio(ours: float, base: float) -> str:
    if not base or math.isnan(ours) or math.isnan(base):
        return "–"
    return f"{ours / base:.2f}×"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "**FAIL**", None: "not measured"}[ok]
