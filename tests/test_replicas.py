"""Two replicas of the real bot on one PostgreSQL: nothing that decides lives in one process."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from standins.dbbrain import DbbrainEmulator
from standins.slack_api import FakeSlack
from tests.conftest import (
    APPROVER,
    APPROVER2,
    COMMANDER,
    POLICY,
    BotProcess,
    Driver,
    new_instance,
    start_bot,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def replicas(tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator, postgres_url: str):
    started: list[BotProcess] = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        started.append(start_bot(folder, slack, dbbrain, DATABASE_URL=postgres_url))
    yield [Driver(bot, slack, dbbrain) for bot in started]
    for bot in started:
        assert bot.stop() == 0, bot.log()


def creates_for(dbbrain: DbbrainEmulator, instance: str) -> list:
    return [c for c in dbbrain.calls_of("CreateKillTask") if c.params["InstanceId"] == instance]


def test_filed_on_one_replica_decided_on_the_other(replicas: list[Driver]) -> None:
    a, b = replicas
    instance = new_instance()
    card = a.file(instance)
    b.click("approve", card, APPROVER)
    b.wait_card(card, "Running")
    a.click("stop", card, APPROVER2)
    a.wait_card(card, "Stopped")
    rejected = a.file(new_instance())
    b.click("reject", rejected, APPROVER)
    a.wait_card(rejected, "Rejected")
    assert len(creates_for(a.dbbrain, instance)) == 1


def test_twenty_clicks_over_two_replicas_make_one_kill_task(replicas: list[Driver]) -> None:
    a, _b = replicas
    instance = new_instance()
    card = a.file(instance)
    barrier = threading.Barrier(20)

    def click(driver: Driver, user: str) -> None:
        barrier.wait()
        driver.click("approve", card, user)

    threads = [
        threading.Thread(
            target=click, args=(replicas[i % 2], (APPROVER, APPROVER2, COMMANDER)[i % 3])
        )
        for i in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    a.wait_card(card, "Running")
    time.sleep(1.0)  # let every losing click finish and every tick pass
    assert len(creates_for(a.dbbrain, instance)) == 1
    started = [t for t in a.thread(card) if "approved; started" in t]
    assert len(started) == 1
    polite = [
        e for e in a.slack.ephemerals()
        if "nothing was changed" in e.get("text", "") or "already approved" in e.get("text", "")
    ]  # fmt: skip
    assert polite, "losing clicks get an ephemeral answer"


def test_expiry_runs_everywhere_but_ends_once(replicas: list[Driver], postgres_url: str) -> None:
    a, b = replicas
    cards = [a.file(new_instance()), b.file(new_instance())]
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE kill_requests SET expires_at = 0 WHERE id IN (:x, :y)"),
            {"x": cards[0].request_id, "y": cards[1].request_id},
        )
    engine.dispose()
    for card in cards:
        a.wait_card(card, "Expired")
    time.sleep(1.0)  # several ticks of both replicas
    for card in cards:
        assert len([t for t in a.thread(card) if "expired" in t]) == 1


NUDGING = POLICY.replace(
    "  expires_after_minutes: 30\n",
    "  expires_after_minutes: 30\n  notify: [S0DBA]\n  remind_after_minutes: 0.02\n"
    f"  escalate_after_minutes: 0.04\n  escalate_to: [{COMMANDER}]\n",
)


def test_one_reminder_and_one_escalation_across_replicas(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator, postgres_url: str
) -> None:
    started = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        started.append(start_bot(folder, slack, dbbrain, NUDGING, DATABASE_URL=postgres_url))
    try:
        a, b = (Driver(bot, slack, dbbrain) for bot in started)
        card = a.file(new_instance())
        assert "<!subteam^S0DBA>" in a.wait_thread(card, "asks for a kill task")
        a.wait_thread(card, ":bell:")
        assert f"<@{COMMANDER}>" in b.wait_thread(card, ":rotating_light:")
        time.sleep(1.5)  # many ticks of both replicas
        thread = a.thread(card)
        assert len([t for t in thread if ":bell:" in t]) == 1
        assert len([t for t in thread if ":rotating_light:" in t]) == 1
        engine = create_engine(postgres_url)
        with engine.connect() as conn:
            sent = conn.execute(
                text(
                    "SELECT action, count(*) FROM audit_log WHERE request_id = :id "
                    "AND outcome = 'sent' GROUP BY action ORDER BY action"
                ),
                {"id": card.request_id},
            ).all()
        engine.dispose()
        assert [tuple(row) for row in sent] == [("escalation", 1), ("reminder", 1)]
    finally:
        for bot in started:
            assert bot.stop() == 0, bot.log()
