"""The dependency rule, checked: the domain imports nothing outside, and the Block Kit
builders and renderer load neither Bolt nor SQLAlchemy (so they stay cheap to import and test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ("slack_bolt", "slack_sdk", "sqlalchemy", "tencentcloud", "prometheus_client", "yaml")


def loaded_by(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return {name.split(".")[0] for name in json.loads(out.stdout)}


@pytest.mark.parametrize(
    "module",
    [
        "bot.killtask",
        "bot.requests",
        "bot.preview",
        "bot.audit",
        "bot.outcomes",
        "bot.estate",
        "bot.rules",
        "bot.policy_fields",
    ],
)
def test_the_domain_imports_nothing_outside(module: str) -> None:
    assert loaded_by(module) & set(OUTSIDE) == set()


def test_the_policy_reads_yaml_and_nothing_else_outside() -> None:
    assert loaded_by("bot.policy") & set(OUTSIDE) == {"yaml"}


@pytest.mark.parametrize(
    "module", ["bot.slack.blocks", "bot.slack.modal", "bot.slack.messages", "bot.slack.mrkdwn"]
)
def test_the_builders_load_neither_bolt_nor_sqlalchemy(module: str) -> None:
    assert loaded_by(module) & {"slack_bolt", "sqlalchemy", "tencentcloud"} == set()
