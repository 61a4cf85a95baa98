"""Settings: every problem on its own line naming the variable, and secrets never shown."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import RedactSecrets, Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent

BOT_TOKEN = "xoxb-bot-token-9f8e7d"
SIGNING_SECRET = "signing-secret-6c5b4a"
APP_TOKEN = "xapp-app-token-3f2e1d"
SECRET_ID = "AKIDconfigtest"
SECRET_KEY = "tencent-secret-key-0a9b8c"
SESSION_TOKEN = "tencent-session-token-7d6e5f"
DB_PASSWORD = "db-password-4c3b2a"
SECRETS = (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN, SECRET_KEY, SESSION_TOKEN, DB_PASSWORD)

REQUIRED = {
    "SLACK_BOT_TOKEN": BOT_TOKEN,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "TENCENTCLOUD_SECRET_ID": SECRET_ID,
    "TENCENTCLOUD_SECRET_KEY": SECRET_KEY,
}
# Every variable the bot reads, so a test process never picks up the developer's own values.
SETTING_NAMES = (
    "POLICY_FILE", "DATABASE_URL", "LOG_LEVEL", "HOST", "PORT", "TICK_SECONDS", "DOTENV_PATH",
)  # fmt: skip
SETTING_PREFIXES = ("SLACK_", "TENCENTCLOUD_", "DBBRAIN_")


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def full_settings() -> Settings:
    return load_settings(
        {
            **REQUIRED,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "TENCENTCLOUD_SESSION_TOKEN": SESSION_TOKEN,
            "DATABASE_URL": f"postgresql://killtask:{DB_PASSWORD}@db.internal:5432/killtask",
        }
    )


# ---------------------------------------------------------------- load_settings


def test_empty_env_lists_each_missing_setting_on_its_own_line() -> None:
    problems = problems_of({})

    assert len(problems) == 4
    for line, name in zip(problems, REQUIRED, strict=True):
        assert line.startswith(f"{name} is not set: ")
        assert "\n" not in line


def test_required_settings_alone_are_enough_with_defaults() -> None:
    settings = load_settings(REQUIRED)

    assert settings.slack_bot_token.reveal() == BOT_TOKEN
    assert settings.tencent_secret_key.reveal() == SECRET_KEY
    assert not settings.socket_mode
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.dbbrain_endpoint == "https://dbbrain.tencentcloudapi.com"
    assert (settings.port, settings.log_level, settings.dbbrain_timeout) == (3000, "INFO", 10)


def test_socket_mode_does_not_need_the_signing_secret() -> None:
    env = {k: v for k, v in REQUIRED.items() if k != "SLACK_SIGNING_SECRET"}

    settings = load_settings({**env, "SLACK_APP_TOKEN": APP_TOKEN})

    assert settings.socket_mode
    assert settings.slack_app_token is not None
    assert settings.slack_app_token.reveal() == APP_TOKEN


def test_http_mode_needs_the_signing_secret() -> None:
    env = {k: v for k, v in REQUIRED.items() if k != "SLACK_SIGNING_SECRET"}

    (line,) = problems_of(env)

    assert line.startswith("SLACK_SIGNING_SECRET is not set")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("LOG_LEVEL", "LOUD"),
        ("DBBRAIN_ENDPOINT", "ftp://x"),
        ("DBBRAIN_ENDPOINT", "https://dbbrain.tencentcloudapi.com/v3"),
        ("DBBRAIN_TIMEOUT", "999"),
        ("TICK_SECONDS", "soon"),
        ("SLACK_API_URL", "nope"),
        ("DATABASE_URL", "my-sqlite-file"),
        ("SLACK_BOT_TOKEN", "bot-token-without-prefix-1a2b3c"),
        ("SLACK_APP_TOKEN", "app-token-without-prefix-4d5e6f"),
    ],
)
def test_a_malformed_value_gives_one_line_naming_the_variable(name: str, value: str) -> None:
    (line,) = problems_of({**REQUIRED, name: value})

    assert line.startswith(name)
    assert value not in line  # never echoed: it may be a secret pasted in the wrong place


def test_no_problem_line_contains_a_secret() -> None:
    env = {
        **REQUIRED,
        "SLACK_BOT_TOKEN": "oops-" + BOT_TOKEN,  # wrong prefix
        "SLACK_APP_TOKEN": "oops-" + APP_TOKEN,  # wrong prefix
        "TENCENTCLOUD_SESSION_TOKEN": SESSION_TOKEN,
        "DATABASE_URL": f"killtask:{DB_PASSWORD}@db",  # not a URL
        "PORT": "abc",
    }

    problems = problems_of(env)

    assert len(problems) == 4
    text = "\n".join(problems)
    for secret in SECRETS:
        assert secret not in text


def test_repr_of_settings_shows_no_secret() -> None:
    settings = full_settings()

    for text in (repr(settings), str(settings)):
        for secret in SECRETS:
            assert secret not in text
        assert "**********" in text


def test_secrets_lists_every_secret_value_for_the_log_filter() -> None:
    assert set(full_settings().secrets()) == set(SECRETS)


# ---------------------------------------------------------------- RedactSecrets


Captured = tuple[logging.Logger, io.StringIO]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """A logger whose handler carries the filter, as bot.__main__ sets it up."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactSecrets(full_settings().secrets()))
    logger = logging.getLogger("tests.config.redact")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.handlers.clear()


def test_redact_blanks_secrets_in_the_message(captured: Captured) -> None:
    logger, stream = captured

    logger.warning(f"Authorization: Bearer {BOT_TOKEN} key={SECRET_KEY}")

    assert stream.getvalue() == "WARNING Authorization: Bearer ********** key=**********\n"


def test_redact_blanks_secrets_passed_as_arguments(captured: Captured) -> None:
    logger, stream = captured

    logger.info("token=%s url=%s n=%d", APP_TOKEN, f"postgresql://u:{DB_PASSWORD}@h/db", 3)
    logger.info("headers=%r", {"X-TC-Token": SESSION_TOKEN, "X-Slack-Signature": SIGNING_SECRET})

    out = stream.getvalue()
    for secret in SECRETS:
        assert secret not in out
    assert "token=********** url=postgresql://u:**********@h/db n=3" in out
    assert out.count("**********") == 4


def test_redact_leaves_other_records_alone(captured: Captured) -> None:
    logger, stream = captured

    logger.info("dbbrain_ok action=%s attempt=%d", "CreateKillTask", 1)

    assert stream.getvalue() == "INFO dbbrain_ok action=CreateKillTask attempt=1\n"


# ---------------------------------------------------------------- python -m bot


def bot_process_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(SETTING_PREFIXES)
        and k not in SETTING_NAMES
        and "PROXY" not in k.upper()
    }
    env["DOTENV_PATH"] = str(tmp_path / "missing.env")  # no .env file may fill the gaps
    env.update(settings)
    return env


def run_bot(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bot_exits_2_naming_each_missing_setting(tmp_path: Path) -> None:
    # With a Slack token the bot means business (no token at all starts a rehearsal instead).
    proc = run_bot(bot_process_env(tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN))

    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    missing = [name for name in REQUIRED if name != "SLACK_BOT_TOKEN"]
    for name in missing:
        assert sum(line.startswith(f"killtask: {name} is not set") for line in lines) == 1, lines
    assert lines[-1] == "killtask: See .env.example for every setting."
    assert len(lines) == len(missing) + 1, lines


def test_bot_exits_2_naming_the_bad_policy_field(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("roles: {oncall: {members: [U1AAA], allow: [aprove]}}\n")
    env = bot_process_env(tmp_path, **REQUIRED, POLICY_FILE=str(policy))

    proc = run_bot(env)

    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"killtask: policy {policy}: ")
    assert "roles.oncall.allow[0]" in line
    assert "aprove" in line
    for secret in SECRETS:
        assert secret not in proc.stderr + proc.stdout


def test_bot_exits_2_when_slack_refuses_the_token(tmp_path: Path) -> None:
    from standins.slack_api import FakeSlack

    with FakeSlack(bot_token="xoxb-the-right-one") as slack:
        env = bot_process_env(
            tmp_path,
            **REQUIRED,
            SLACK_API_URL=slack.url,
            POLICY_FILE=str(ROOT / "policy.example.yaml"),
            DATABASE_URL=f"sqlite:///{tmp_path / 'k.db'}",
        )
        proc = run_bot(env)
    assert proc.returncode == 2, proc.stderr
    assert "killtask: Slack refused SLACK_BOT_TOKEN (invalid_auth)" in proc.stderr
    for secret in SECRETS:
        assert secret not in proc.stderr + proc.stdout


def test_static_keys_are_optional_when_the_policy_names_other_credentials() -> None:
    env = {k: v for k, v in REQUIRED.items() if not k.startswith("TENCENTCLOUD_")}
    assert [p.split(" ")[0] for p in problems_of(env)] == [
        "TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY",
    ]  # fmt: skip
    settings = load_settings(env, needs_keys=False)
    assert not settings.tencent_secret_id and not settings.tencent_secret_key
    assert settings.sts_endpoint == "https://sts.tencentcloudapi.com"


def test_the_sts_endpoint_is_a_url() -> None:
    settings = load_settings({**REQUIRED, "TENCENTCLOUD_STS_ENDPOINT": "http://127.0.0.1:9"})
    assert settings.sts_endpoint == "http://127.0.0.1:9"
    (problem,) = problems_of({**REQUIRED, "TENCENTCLOUD_STS_ENDPOINT": "ftp://sts"})
    assert problem.startswith("TENCENTCLOUD_STS_ENDPOINT must look like")
