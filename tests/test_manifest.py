"""app.yaml is a valid Slack app manifest and declares what the bot relies on."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "app.yaml"
# Slack's published schema, kept beside the repository (not in it: it has its own licence).
SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "slack" / "manifest.schema.1.0.0.json"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text())
    assert isinstance(data, dict), "app.yaml must be a YAML mapping"
    return data


def test_manifest_matches_slacks_schema(manifest: dict[str, Any]) -> None:
    if not SCHEMA.is_file():
        message = f"Slack's app-manifest schema is not at {SCHEMA}; cannot validate app.yaml"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)
    schema = json.loads(SCHEMA.read_text())
    assert "$schema" in schema, "the schema should declare its JSON Schema draft"
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)

    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))

    assert not errors, "app.yaml does not match Slack's manifest schema:\n" + "\n".join(
        f"  {'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors
    )


def test_manifest_declares_the_killtask_command(manifest: dict[str, Any]) -> None:
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert "/killtask" in commands


def test_manifest_turns_on_interactivity_and_socket_mode(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is True


def test_manifest_asks_for_the_scopes_the_bot_uses(manifest: dict[str, Any]) -> None:
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "usergroups:read", "files:write"} <= scopes
    # conversations.history, to find a card whose post went unanswered, in any channel kind
    assert {"channels:history", "groups:history"} <= scopes


def test_manifest_declares_the_message_shortcut_and_the_options_url(
    manifest: dict[str, Any],
) -> None:
    shortcuts = manifest["features"]["shortcuts"]
    (shortcut,) = [s for s in shortcuts if s["callback_id"] == "killtask_from_message"]
    assert shortcut["type"] == "message" and shortcut["name"] == "Kill sessions…"
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["message_menu_options_url"] == interactivity["request_url"]
