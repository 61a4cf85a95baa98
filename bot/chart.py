"""The chart of matching sessions over time, as a PNG. matplotlib is imported here only, and
only when a chart is drawn, so the bot starts small; its headless Agg backend needs no display.
"""

from __future__ import annotations

import io


def draw(samples: list[tuple[float, int, int]], title: str) -> bytes:
    """Matching sessions (and all sessions read) against minutes since the first sample."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # a Figure, not pyplot: no global state, thread-safe

    start = samples[0][0]
    minutes = [(at - start) / 60 for at, _, _ in samples]
    figure = Figure(figsize=(6.4, 3.2), dpi=100)
    axes = figure.add_subplot()
    axes.plot(minutes, [t for _, _, t in samples], color="#9aa5b1", linewidth=1,
              label="all sessions read")  # fmt: skip
    axes.plot(minutes, [m for _, m, _ in samples], color="#8b1a1a", linewidth=2, marker="o",
              markersize=3, label="matching sessions")  # fmt: skip
    axes.set_title(title, fontsize=10)
    axes.set_xlabel("minutes since the kill task started")
    axes.set_ylabel("sessions")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
