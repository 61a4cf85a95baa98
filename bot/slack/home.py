"""App Home: published when a person opens it, and again for the people concerned after any
change they can act on. Its buttons name a request by number only; the service binds the
click to the stored request and runs the card's own checks (bot.home.from_home)."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

from slack_bolt import Ack

from bot import metrics
from bot.home import HomeLists, from_home, home_lists
from bot.killtask import describe_filters
from bot.outcomes import Announcement, Outcome
from bot.requests import KillRequest, State
from bot.service import KillTaskService
from bot.slack import messages
from bot.slack.adapters import SlackNotifier
from bot.slack.blocks import STATE_TITLES, button, confirm_dialog, section
from bot.slack.later import AfterAck
from bot.slack.mrkdwn import channel_link, code, esc, mention, when
from bot.store import StoreError

log = logging.getLogger(__name__)

HOME_BUTTONS = ("home_approve", "home_reject", "home_stop")
_NUMBER = re.compile(r"[0-9]{1,9}")
_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
REMEMBERED = 500  # people whose home this process republishes after news


def _line(request: KillRequest) -> str:
    return (
        f"*#{request.id}* `{code(request.spec.instance_id)}` · "
        f"{esc(describe_filters(request.spec))} · by {mention(request.requester_id)} "
        f"in {channel_link(request.channel_id)}"
    )


def home_view(lists: HomeLists) -> dict:
    """The home tab for one person, as a pure Block Kit view."""
    if not lists.member:
        text = "You are not in any role of the kill-task policy, so there is nothing to act on."
        return {"type": "home", "blocks": [section(text)]}
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Waiting for your approval"}}
    ]
    for request in lists.waiting:
        blocks.append(section(f"{_line(request)} · expires {when(request.expires_at)}"))
        what = f"Request #{request.id} on {code(request.spec.instance_id)}: DBbrain will kill "
        confirm = confirm_dialog(
            "Approve this kill task?", what + esc(describe_filters(request.spec)), "Approve"
        )
        blocks.append({"type": "actions", "elements": [
            {**button("Approve", "home_approve", str(request.id), "primary"), "confirm": confirm},
            button("Reject", "home_reject", str(request.id), "danger"),
        ]})  # fmt: skip
    if not lists.waiting:
        blocks.append(section("_Nothing is waiting for your approval._"))
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Running"}})
    for request, may_stop in lists.running:
        _, title = STATE_TITLES[request.state]
        blocks.append(section(f"{_line(request)} · {title} since {when(request.started_at)}"))
        if may_stop:
            confirm = confirm_dialog(
                "Stop this kill task?", f"Request #{request.id}", "Stop", "danger"
            )
            stop = {**button("Stop", "home_stop", str(request.id), "danger"), "confirm": confirm}
            blocks.append({"type": "actions", "elements": [stop]})
    if not lists.running:
        blocks.append(section("_No kill task is running._"))
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Recent"}})
    lines = [_ended(r) for r in lists.recent] or ["_Nothing has ended yet._"]
    blocks.append(section("\n".join(lines)))
    return {"type": "home", "blocks": blocks}


def _ended(request: KillRequest) -> str:
    _, title = STATE_TITLES[request.state]
    who = request.stopped_by or request.decided_by
    by = f" by {mention(who)}" if who else ""
    return f"• {_line(request)} · *{title}*{by}"


class Home:
    def __init__(self, service: KillTaskService, notifier: SlackNotifier, background):  # type: ignore[no-untyped-def]
        self.service = service
        self.notifier = notifier
        self.background = background
        self.after_ack = AfterAck(background)
        self._seen: dict[str, None] = {}  # insertion-ordered, bounded
        self._lock = threading.Lock()
        notifier.on_news = self.news

    def publish(self, user_id: str) -> None:
        view = home_view(home_lists(self.service, user_id))
        self.notifier.client.views_publish(user_id=user_id, view=view)

    def opened(self, event: dict) -> None:
        user_id = str(event.get("user") or "")
        if event.get("tab") != "home" or not _USER.match(user_id):
            return
        with self._lock:
            self._seen.pop(user_id, None)
            self._seen[user_id] = None
            while len(self._seen) > REMEMBERED:
                self._seen.pop(next(iter(self._seen)))
        if not self.background.submit(
            lambda: self.publish(user_id), lambda exc: self._not_shown(user_id), "home"
        ):
            self._not_shown(user_id)

    def _not_shown(self, user_id: str) -> None:
        self.notifier.dm(
            user_id,
            "Your killtask home could not be shown just now; open the Home tab again in a "
            "minute. The cards in the channels work as usual.",
        )

    def _republish(self, user_id: str) -> None:
        """Best effort: the person already has their answer, and the card shows the truth."""
        try:
            self.publish(user_id)
        except Exception as exc:
            log.warning("views_publish_failed user=%s error=%s", user_id, type(exc).__name__)

    def news(self, request: KillRequest, news: Announcement) -> None:
        """Republish the home of everyone who opened theirs here lately: a home nobody opened
        is built fresh when it is opened, so building it now would only cost every click
        time. On the pool, never in the way of a start or a stop."""
        with self._lock:
            concerned = sorted(self._seen)
        if not concerned:
            return

        def republish() -> None:
            for user_id in concerned:
                self._republish(user_id)

        if not self.background.submit(republish, lambda exc: None, "home_news"):
            log.warning("home_news_skipped request=%s reason=pool_full", request.id)

    def button(self, ack: Ack, body: dict, action: dict) -> None:
        ack = metrics.timed_ack(ack)
        verb = str(action["action_id"]).removeprefix("home_")
        user_id = body["user"]["id"]
        value = str(action.get("value", ""))
        tell = lambda text: self.notifier.dm(user_id, text)  # noqa: E731
        if not _NUMBER.fullmatch(value):
            ack()
            self.after_ack.say(tell, "That button does not name a request, so nothing was changed.")
            return
        request_id = int(value)
        if verb == "stop":
            ack()
            self._later(verb, lambda: from_home(self.service, verb, user_id, request_id), user_id,
                        request_id, lane="urgent")  # fmt: skip
            return
        try:
            decided = from_home(self.service, verb, user_id, request_id)  # stored before the ack
        except StoreError:
            ack()
            self.after_ack.say(tell, messages.store_down("nothing was changed"))
            return
        ack()
        if not decided.ok:
            self._later("home", lambda: decided, user_id, request_id)  # says why, then refreshes
            return
        starts = decided.request is not None and decided.request.state is State.APPROVED
        self._later(verb, lambda: self.service.carry_out(decided, user_id), user_id, request_id,
                    lane="urgent" if starts else "slack")  # fmt: skip

    def _later(
        self, kind: str, job: Callable[[], Outcome | None], user_id: str, request_id: int,
        lane: str = "slack",
    ) -> None:  # fmt: skip
        """The slow part, in direct messages; then this person's home shows the change."""
        tell = lambda text: self.notifier.dm(user_id, text)  # noqa: E731
        then = lambda: self._republish(user_id)  # noqa: E731
        self.after_ack.run(kind, job, tell, request_id, lane, then=then)
