"""End to end: the real bot, signed Slack requests, the fake Web API, the DBbrain emulator."""

from __future__ import annotations

import json

import pytest

from tests.conftest import (
    APPROVER,
    CHANNEL,
    COMMANDER,
    REQUESTER,
    SECRET_ID,
    Driver,
    buttons,
    card_text,
    new_instance,
    wait_until,
)

pytestmark = pytest.mark.e2e


def test_command_file_approve_run_stop(driver: Driver) -> None:
    instance = new_instance()
    driver.command(
        f"{instance} duration=10m USER=app command=query,sleep time=30 db=orders,billing "
        f'host=10.0.0.5 info="SELECT * FROM orders" reason="connection storm"'
    )
    card = driver.card_posted(instance)
    pending = driver.wait_card(card, "Waiting for approval")
    text = card_text(pending)
    assert (
        "sessions where ALL of: account = app, client host = 10.0.0.5, database is one of "
        "orders, billing, command is one of Query, Sleep, "
        'statement starts with "SELECT * FROM orders", running ≥ 30 s'
    ) in text
    assert "connection storm" in text and f"<@{REQUESTER}>" in text
    assert "Expires" in text and "10 min" in text
    assert buttons(pending) == ["approve", "reject", "refresh_preview"]
    assert driver.dbbrain.calls_of("CreateKillTask") == [] or all(
        c.params["InstanceId"] != instance for c in driver.dbbrain.calls_of("CreateKillTask")
    )

    driver.click("approve", card, APPROVER)
    running = driver.wait_card(card, "Running")
    calls = [
        c for c in driver.dbbrain.calls_of("CreateKillTask") if c.params["InstanceId"] == instance
    ]
    assert len(calls) == 1
    call = calls[0]
    assert call.signature_ok and call.secret_id == SECRET_ID
    assert call.params == {
        "InstanceId": instance,
        "Duration": 600,
        "Product": "mysql",
        "Host": "10.0.0.5",
        "DB": "orders,billing",
        "Command": "Query,Sleep",
        "Info": "SELECT * FROM orders",
        "User": "app",
        "Time": 30,
    }
    assert call.request_id in card_text(running)
    assert buttons(running) == ["stop", "refresh_preview"]
    assert call.request_id in driver.wait_thread(card, f"<@{APPROVER}> approved")

    driver.click("stop", card, APPROVER)
    stopped = driver.wait_card(card, "Stopped")
    cancels = [
        c for c in driver.dbbrain.calls_of("CancelKillTask") if c.params["InstanceId"] == instance
    ]
    assert len(cancels) == 1 and cancels[0].params["Product"] == "mysql"
    assert f"<@{APPROVER}>" in card_text(stopped) and buttons(stopped) == []
    assert driver.dbbrain.active_task(instance) is None
    driver.wait_thread(card, f"<@{APPROVER}> stopped")


def test_modal_opens_and_files(driver: Driver) -> None:
    trigger = "trigger-modal-1"
    driver.command("", trigger_id=trigger)
    opened = driver.slack.wait_for("views.open", lambda c: c.args.get("trigger_id") == trigger)
    view = opened.args["view"]
    block_ids = [b.get("block_id") for b in view["blocks"] if b["type"] == "input"]
    assert block_ids == [
        "instance_id", "product", "duration", "user", "host", "db", "command", "info", "time",
        "reason",
    ]  # fmt: skip
    instance = new_instance()
    values = {
        "instance_id": {"value": {"type": "plain_text_input", "value": instance}},
        "product": {"value": {"type": "static_select", "selected_option": {"value": "mysql"}}},
        "duration": {"value": {"type": "static_select", "selected_option": {"value": "600"}}},
        "user": {"value": {"type": "plain_text_input", "value": "app"}},
        "host": {"value": {"type": "plain_text_input", "value": None}},
        "db": {"value": {"type": "plain_text_input", "value": None}},
        "command": {
            "value": {
                "type": "multi_static_select",
                "selected_options": [{"value": "Query"}],
            }
        },
        "info": {"value": {"type": "plain_text_input", "value": None}},
        "time": {"value": {"type": "number_input", "value": "5"}},
        "reason": {"value": {"type": "plain_text_input", "value": "lock pile-up"}},
    }
    status, body, _ = driver.sender.submit_view(
        "killtask_file",
        values,
        user_id=REQUESTER,
        private_metadata=view["private_metadata"],
        view_id="V0MODAL1",
    )
    assert status == 200 and body == ""
    card = driver.card_posted(instance)
    text = card_text(driver.wait_card(card, "Waiting for approval"))
    assert "sessions where ALL of: account = app, command is Query, running ≥ 5 s" in text


def test_modal_bad_values_come_back_on_their_fields(driver: Driver) -> None:
    values = {
        "instance_id": {"value": {"type": "plain_text_input", "value": "not an id"}},
        "duration": {"value": {"type": "static_select", "selected_option": {"value": "600"}}},
        "host": {"value": {"type": "plain_text_input", "value": "db.example"}},
    }
    posted_before = len(driver.slack.calls_of("chat.postMessage"))
    status, _, answer = driver.sender.submit_view(
        "killtask_file",
        values,
        user_id=REQUESTER,
        private_metadata=json.dumps({"channel_id": CHANNEL}),
    )
    assert status == 200
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"instance_id", "host"}
    assert "client IP" in answer["errors"]["host"]
    assert len(driver.slack.calls_of("chat.postMessage")) == posted_before


def test_bad_line_names_field_rule_and_usage(driver: Driver) -> None:
    body = driver.command(f"{new_instance()} duration=soon host=nope")
    answer = json.loads(body)
    assert answer["response_type"] == "ephemeral"
    text = answer["text"]
    assert "`duration`" in text and "until-stopped" in text
    assert "`host`" in text and "client IP" in text
    # Slack shows &lt;…&gt; as <…>; raw angle brackets would be read as a link
    assert "Usage: `/killtask &lt;InstanceId&gt;" in text


def test_break_glass_skips_approval_and_says_so(driver: Driver) -> None:
    instance = new_instance()
    driver.command(
        f'{instance} duration=5m user=batch reason="primary is dying" --break-glass', user=COMMANDER
    )
    card = driver.card_posted(instance)
    running = driver.wait_card(card, "Running")
    assert "skipped approval" in card_text(running)
    driver.wait_thread(card, "SKIPPED APPROVAL")
    assert (
        len(
            [
                c
                for c in driver.dbbrain.calls_of("CreateKillTask")
                if c.params["InstanceId"] == instance
            ]
        )
        == 1
    )


def test_an_approval_with_a_fresh_preview_sends_the_kill_without_reading_again(
    driver: Driver,
) -> None:
    """The card's preview is seconds old (younger than a sample period): CreateKillTask goes
    straight after the click, and the task's first sample is that preview."""
    instance = new_instance()
    session = {"ID": "71", "User": "app", "Host": "10.0.0.9:4000", "DB": "orders",
               "State": "executing", "Command": "Query", "Time": "12"}  # fmt: skip
    driver.dbbrain.set_process_list(instance, [session, {**session, "ID": "72"}])
    card = driver.file(instance, "duration=10m user=app")
    wait_until(
        lambda: (
            "2 sessions match right now"
            in card_text(driver.slack.message(card.channel, card.ts) or {})
        ),
        "the filing's preview",
    )

    def about_it(call) -> bool:  # type: ignore[no-untyped-def]
        return call.params.get("InstanceId") == instance

    reads_before = len([c for c in driver.dbbrain.calls_of("DescribeMySqlProcessList")
                        if about_it(c)])  # fmt: skip
    driver.click("approve", card, APPROVER)
    running = card_text(driver.wait_card(card, "Running"))
    calls = [c for c in driver.dbbrain.calls if about_it(c)]
    create = next(i for i, c in enumerate(calls) if c.action == "CreateKillTask")
    reads = [c for c in calls[:create] if c.action == "DescribeMySqlProcessList"]
    assert len(reads) == reads_before  # nothing was read between the click and the kill
    assert "(2 when it started" in running
