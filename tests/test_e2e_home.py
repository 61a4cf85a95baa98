"""End to end: App Home. Published on app_home_opened; its Approve, Reject and Stop buttons do
what the card's do (same checks, same card update), and a click by someone not allowed
changes nothing and says why."""

from __future__ import annotations

import time

import pytest

from standins.slack_api import FakeSlack
from tests.conftest import APPROVER, APPROVER2, REQUESTER, STRANGER, Driver, card_text, new_instance

pytestmark = pytest.mark.e2e


def home_buttons(view: dict) -> list[tuple[str, str]]:
    return [
        (element["action_id"], element["value"])
        for block in view.get("blocks") or []
        for element in block.get("elements") or []
        if element.get("type") == "button"
    ]


def wait_home(slack: FakeSlack, user: str, check, timeout: float = 10.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = slack.homes.get(user)
        if view is not None and check(view):
            return view
        time.sleep(0.05)
    raise AssertionError(f"home of {user} never matched: {slack.homes.get(user)}")


def direct_to(slack: FakeSlack, user: str, contains: str, timeout: float = 10.0) -> str:
    call = slack.wait_for(
        "chat.postMessage",
        lambda c: c.args.get("channel") == user and contains in c.args.get("text", ""),
        timeout=timeout,
    )
    return call.args["text"]


def test_home_lists_and_its_buttons_act_like_the_card(driver: Driver) -> None:
    slack, sender = driver.slack, driver.sender
    card = driver.file(new_instance())
    rid = str(card.request_id)
    status, _, _ = sender.home_opened(APPROVER)
    assert status == 200
    view = wait_home(slack, APPROVER, lambda v: ("home_approve", rid) in home_buttons(v))
    assert ("home_reject", rid) in home_buttons(view)
    assert "Waiting for your approval" in card_text(view) and f"<@{REQUESTER}>" in card_text(view)

    # The requester (oncall) may not approve: not offered, and refused when forced.
    sender.home_opened(REQUESTER)
    mine = wait_home(slack, REQUESTER, lambda v: "Recent" in card_text(v))
    assert ("home_approve", rid) not in home_buttons(mine)
    sender.home_click("home_approve", rid, user_id=REQUESTER)
    assert "allows `approve`" in direct_to(slack, REQUESTER, "Not allowed")

    # Someone not in the policy sees nothing to act on, and a forged click changes nothing.
    sender.home_opened(STRANGER)
    wait_home(slack, STRANGER, lambda v: "not in any role" in card_text(v))
    sender.home_click("home_approve", rid, user_id=STRANGER)
    assert "not a member of any role" in direct_to(slack, STRANGER, "Not allowed")
    sender.home_click("home_stop", rid, user_id=STRANGER)
    time.sleep(0.3)
    assert driver.card_state(card) == "Waiting for approval"

    sender.home_click("home_approve", rid, user_id=APPROVER)
    driver.wait_card(card, "Running")
    driver.wait_thread(card, f"<@{APPROVER}> approved; started")
    view = wait_home(slack, APPROVER, lambda v: ("home_stop", rid) in home_buttons(v))
    assert ("home_approve", rid) not in home_buttons(view)

    sender.home_click("home_stop", rid, user_id=APPROVER2)
    driver.wait_card(card, "Stopped")
    driver.wait_thread(card, f"<@{APPROVER2}> stopped")
    recent = wait_home(slack, APPROVER2, lambda v: f"*#{rid}*" in card_text(v))
    assert "Stopped" in card_text(recent) and ("home_stop", rid) not in home_buttons(recent)


def test_home_reject_and_a_click_on_a_closed_or_unknown_request(driver: Driver) -> None:
    slack, sender = driver.slack, driver.sender
    card = driver.file(new_instance())
    rid = str(card.request_id)
    sender.home_click("home_reject", rid, user_id=APPROVER)
    driver.wait_card(card, "Rejected")
    driver.wait_thread(card, f"<@{APPROVER}> rejected")
    sender.home_click("home_approve", rid, user_id=APPROVER2)
    assert "already rejected" in direct_to(slack, APPROVER2, f"#{rid} is already")
    sender.home_click("home_approve", "999999", user_id=APPROVER2)
    direct_to(slack, APPROVER2, "There is no request #999999")
    sender.home_click("home_approve", "<!channel>", user_id=APPROVER2)
    direct_to(slack, APPROVER2, "does not name a request")
