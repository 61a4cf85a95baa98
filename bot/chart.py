"""The chart of matching sessions over time, as a PNG, drawn with Pillow.

Pillow is imported here only, and only when a chart is drawn. A plotting library would draw the
same two lines, but it would double the bot's memory for one picture at the end of a task.
"""

from __future__ import annotations

import io
import math

WIDTH, HEIGHT = 640, 320
SCALE = 2  # drawn at twice the size, then shrunk: smooth lines without an anti-aliasing pass
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 46  # the plot's margins, in final pixels
MATCHING, ALL_READ = (139, 26, 26), (154, 165, 177)
INK, GRID = (40, 40, 40), (225, 228, 232)


def draw(samples: list[tuple[float, int, int]], title: str) -> bytes:
    """Matching sessions (and all sessions read) against minutes since the first sample."""
    from PIL import Image, ImageDraw, ImageFont

    start = samples[0][0]
    minutes = [(at - start) / 60 for at, _, _ in samples]
    x_ticks = nice_ticks(max(minutes[-1], 1.0))  # at least a minute wide
    y_ticks = nice_ticks(max(max(t for _, _, t in samples), max(m for _, m, _ in samples), 1))
    x_end, y_end = x_ticks[-1], y_ticks[-1]
    image = Image.new("RGB", (WIDTH * SCALE, HEIGHT * SCALE), "white")
    pen = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=11 * SCALE)
    big = ImageFont.load_default(size=13 * SCALE)

    def at(minute: float, sessions: float) -> tuple[float, float]:
        x = LEFT + (WIDTH - LEFT - RIGHT) * minute / x_end
        y = HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * sessions / y_end
        return x * SCALE, y * SCALE

    for value in y_ticks:
        pen.line([at(0, value), at(x_end, value)], fill=GRID, width=SCALE)
        x, y = at(0, value)
        pen.text((x - 6 * SCALE, y), label(value), fill=INK, font=font, anchor="rm")
    for value in x_ticks:
        pen.line([at(value, 0), at(value, y_end)], fill=GRID, width=SCALE)
        x, y = at(value, 0)
        pen.text((x, y + 6 * SCALE), label(value), fill=INK, font=font, anchor="mt")
    pen.line([at(0, y_end), at(0, 0), at(x_end, 0)], fill=INK, width=SCALE)
    _series(pen, [at(m, t) for m, (_, _, t) in zip(minutes, samples, strict=True)], ALL_READ, 1.5)
    matching = [at(m, n) for m, (_, n, _) in zip(minutes, samples, strict=True)]
    _series(pen, matching, MATCHING, 2, dots=True)
    pen.text((WIDTH * SCALE / 2, 10 * SCALE), title, fill=INK, font=big, anchor="mt")
    pen.text((WIDTH * SCALE / 2, (HEIGHT - 6) * SCALE), "minutes since the kill task started",
             fill=INK, font=font, anchor="mb")  # fmt: skip
    pen.text((LEFT * SCALE, (TOP - 10) * SCALE), "sessions", fill=INK, font=font, anchor="mb")
    _legend(pen, font)
    out = io.BytesIO()
    image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS).save(out, format="PNG")
    return out.getvalue()


def _series(pen, points, color, width: float, dots: bool = False) -> None:  # type: ignore[no-untyped-def]
    if len(points) > 1:
        pen.line(points, fill=color, width=round(width * SCALE))  # 1.5: no faint half-rows
    if dots:
        r = 3 * SCALE
        for x, y in points:
            pen.ellipse([x - r, y - r, x + r, y + r], fill=color)


def _legend(pen, font) -> None:  # type: ignore[no-untyped-def]
    x, y = (WIDTH - RIGHT - 150) * SCALE, (TOP + 6) * SCALE
    for color, width, text in ((MATCHING, 2, "matching sessions"), (ALL_READ, 1.5, "all read")):
        pen.line([(x, y), (x + 18 * SCALE, y)], fill=color, width=round(width * SCALE))
        pen.text((x + 24 * SCALE, y), text, fill=INK, font=font, anchor="lm")
        y += 16 * SCALE


def nice_ticks(top: float, most: int = 6) -> list[float]:
    """0 and round steps (1, 2 or 5 times a power of ten) up to at least `top`."""
    raw = top / (most - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(s * power for s in (1, 2, 5, 10) if s * power >= raw)
    count = math.ceil(top / step - 1e-9)
    return [step * i for i in range(count + 1)]


def label(value: float) -> str:
    return f"{value:g}"
