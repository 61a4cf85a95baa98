"""Settings from the environment (and .env), read and checked once at start.

Each problem is reported on its own line; secrets are wrapped so they print as **********.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.cloud import DEFAULT_ENDPOINT, split_endpoint

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_DATABASE_URL = "sqlite:///killtask.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("keyvalue", "json")


class Secret:
    """A value that never shows itself in logs, reprs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


class SettingsError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Settings:
    slack_bot_token: Secret
    slack_signing_secret: Secret
    slack_app_token: Secret | None
    slack_api_url: str
    tencent_secret_id: Secret
    tencent_secret_key: Secret
    tencent_session_token: Secret | None
    dbbrain_endpoint: str
    dbbrain_timeout: int
    policy_file: str
    database_url: Secret  # may hold a password
    log_level: str
    host: str
    port: int
    tick_seconds: float
    migrate_on_start: bool = True
    log_format: str = "keyvalue"
    health_port: int = 8080  # Socket Mode's /healthz, /readyz and /metrics
    sts_endpoint: str = "https://sts.tencentcloudapi.com"  # AssumeRole for the policy's accounts

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def secrets(self) -> list[str]:
        """Every secret value, for the log filter that blanks them out."""
        values = [
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.tencent_secret_key,
            self.tencent_session_token,
        ]
        password = urlsplit(self.database_url.reveal()).password
        found = [v.reveal() for v in values if v] + ([password] if password else [])
        return [v for v in found if len(v) >= 6]


def load_settings(env: Mapping[str, str] | None = None, needs_keys: bool = True) -> Settings:
    """`needs_keys`: the policy has an account on the static keys (env), so they must be set."""
    env = os.environ if env is None else env
    problems: list[str] = []

    def get(name: str, default: str | None = None) -> str | None:
        value = env.get(name)
        return value.strip() if value and value.strip() else default

    def required(name: str, prefix: str | None, what: str) -> Secret:
        value = get(name)
        if value is None:
            problems.append(f"{name} is not set: {what}.")
            return Secret("")
        if prefix and not value.startswith(prefix):
            problems.append(f"{name} does not look right: it should start with {prefix}.")
        return Secret(value)

    app_token_raw = get("SLACK_APP_TOKEN")
    slack_app_token = None
    if app_token_raw is not None:
        if not app_token_raw.startswith("xapp-"):
            problems.append("SLACK_APP_TOKEN does not look right: it should start with xapp-.")
        slack_app_token = Secret(app_token_raw)
    bot_token = required("SLACK_BOT_TOKEN", "xoxb-", "the bot token from OAuth & Permissions")
    if slack_app_token is None:
        signing = required(
            "SLACK_SIGNING_SECRET", None, "the signing secret from Basic Information (HTTP mode)"
        )
    else:
        signing = Secret(get("SLACK_SIGNING_SECRET") or "")

    api_url = get("SLACK_API_URL", DEFAULT_SLACK_API_URL) or DEFAULT_SLACK_API_URL
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problems.append("SLACK_API_URL must be an http(s) URL such as https://slack.com/api/.")
    api_url = api_url if api_url.endswith("/") else api_url + "/"

    if needs_keys:
        secret_id = required(
            "TENCENTCLOUD_SECRET_ID", None, "the CAM API key ID the bot calls DBbrain with"
        )
        secret_key = required("TENCENTCLOUD_SECRET_KEY", None, "the CAM API key secret")
    else:
        secret_id = Secret(get("TENCENTCLOUD_SECRET_ID") or "")
        secret_key = Secret(get("TENCENTCLOUD_SECRET_KEY") or "")
    sts_endpoint = get("TENCENTCLOUD_STS_ENDPOINT", "https://sts.tencentcloudapi.com") or ""
    try:
        split_endpoint(sts_endpoint)
    except ValueError:
        problems.append(
            "TENCENTCLOUD_STS_ENDPOINT must look like https://sts.tencentcloudapi.com or "
            "http://host:port."
        )
    token_raw = get("TENCENTCLOUD_SESSION_TOKEN")

    endpoint = get("DBBRAIN_ENDPOINT", DEFAULT_ENDPOINT) or DEFAULT_ENDPOINT
    try:
        split_endpoint(endpoint)
    except ValueError as exc:
        problems.append(f"DBBRAIN_ENDPOINT {exc}.")

    log_level = (get("LOG_LEVEL", "INFO") or "INFO").upper()
    if log_level not in LOG_LEVELS:
        problems.append(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}.")
        log_level = "INFO"

    log_format = (get("LOG_FORMAT", "keyvalue") or "keyvalue").lower()
    if log_format not in LOG_FORMATS:
        problems.append("LOG_FORMAT must be keyvalue (the default) or json.")

    database_url = get("DATABASE_URL", DEFAULT_DATABASE_URL) or DEFAULT_DATABASE_URL
    if "://" not in database_url:
        problems.append(
            "DATABASE_URL must be a URL such as sqlite:///killtask.db or postgresql://…"
        )

    def number(name: str, default: str, low: float, high: float, kind=int):  # type: ignore[no-untyped-def]
        raw = get(name, default) or default
        try:
            value = kind(raw)
        except ValueError:
            problems.append(f"{name} must be a number from {low} to {high}.")
            return kind(default)
        if not low <= value <= high:
            problems.append(f"{name} must be a number from {low} to {high}.")
        return value

    port = number("PORT", "3000", 1, 65535)
    health_port = number("HEALTH_PORT", "8080", 1, 65535)
    timeout = number("DBBRAIN_TIMEOUT", "10", 1, 60)
    tick = number("TICK_SECONDS", "5", 0.05, 300, float)

    migrate_raw = (get("MIGRATE_ON_START", "true") or "true").lower()
    if migrate_raw not in ("true", "false", "1", "0", "yes", "no"):
        problems.append("MIGRATE_ON_START must be true or false.")

    if problems:
        raise SettingsError(problems)
    return Settings(
        slack_bot_token=bot_token,
        slack_signing_secret=signing,
        slack_app_token=slack_app_token,
        slack_api_url=api_url,
        tencent_secret_id=secret_id,
        tencent_secret_key=secret_key,
        tencent_session_token=Secret(token_raw) if token_raw else None,
        dbbrain_endpoint=endpoint,
        dbbrain_timeout=timeout,
        policy_file=get("POLICY_FILE", "policy.yaml") or "policy.yaml",
        database_url=Secret(database_url),
        log_level=log_level,
        host=get("HOST", "0.0.0.0") or "0.0.0.0",
        port=port,
        tick_seconds=tick,
        migrate_on_start=migrate_raw in ("true", "1", "yes"),
        log_format=log_format,
        health_port=health_port,
        sts_endpoint=sts_endpoint,
    )


class RedactSecrets(logging.Filter):
    """Blanks out any secret value that slips into a log line, from any library."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        # Longest first, so a secret that contains another is blanked whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "**********")
            record.msg, record.args = message, None
        if record.exc_info:
            # Tracebacks can quote arguments: render it now, redacted, and drop the raw one.
            text = logging.Formatter().formatException(record.exc_info)
            for secret in self.secrets:
                text = text.replace(secret, "**********")
            record.msg, record.args = f"{record.getMessage()}\n{text}", None
            record.exc_info, record.exc_text = None, None
        return True
