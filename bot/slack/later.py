"""What a handler does after its ack, on the process's pool (bot.background).

Handlers run inline (Bolt's process_before_response), so Slack's answer leaves only when the
handler returns: anything slow after the ack, a message to the person included, goes here.
Whatever fails ends in words to the person; a full pool says so at once.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.background import Background
from bot.outcomes import Outcome
from bot.slack import messages
from bot.store import StoreError

BUSY = (
    "The bot is too busy to take this right now, so nothing was done. Try again in a few seconds."
)


def why(exc: BaseException) -> str:
    if isinstance(exc, StoreError):
        return str(exc)
    return f"an unexpected {type(exc).__name__}; the bot's log has the details"


class AfterAck:
    def __init__(self, background: Background):
        self.background = background

    def run(
        self, kind: str, job: Callable[[], Outcome | None], tell: Callable[[str], None],
        request_id: int | None = None, lane: str = "slack", always: bool = False,
        then: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        """Run the slow part; the person hears of any problem (or of everything, `always`).
        `then` runs after the job, whatever it answered (not when it raised)."""

        def run() -> None:
            result = job()
            if result is not None and (always or not result.ok) and result.message:
                tell(messages.outcome(result))
            if then is not None:
                then()

        def failed(exc: BaseException) -> None:
            tell(messages.after_ack_failed(kind, request_id, why(exc)))

        if not self.background.submit(run, failed, kind, lane):
            tell(BUSY)

    def say(self, tell: Callable[[str], None], text: str) -> None:
        """Tell the person, without holding up the answer to Slack. (A notifier never
        raises: what it could not deliver, it logs and counts.)"""
        if not self.background.submit(lambda: tell(text), lambda _exc: None, "tell", "slack"):
            tell(text)  # the pool is full: said now, late rather than never
