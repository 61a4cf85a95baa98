"""Start-up: load .env, check settings and policy, then serve Socket Mode or HTTP (gunicorn)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from dotenv import load_dotenv

from bot.config import Settings, SettingsError, load_settings
from bot.logs import configure_logging
from bot.policy import Policy, PolicyError, load_policy, policy_hash

log = logging.getLogger("bot")


def fail(lines: list[str]) -> None:
    for line in lines:
        print(f"killtask: {line}", file=sys.stderr)
    sys.exit(2)


def prepare_database(database_url: str, migrate: bool) -> None:
    """Migrate the schema, or check that someone did; one clear line when it cannot."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.migrate import current, head, upgrade
    from bot.store import make_engine

    engine = make_engine(database_url)
    try:
        if migrate:
            upgrade(engine)
        elif current(engine) != head():
            fail(
                [
                    f"the database schema is at {current(engine) or 'nothing'}, the bot needs "
                    f"{head()}: run `python -m bot migrate` (or set MIGRATE_ON_START=true)."
                ]
            )
    except SQLAlchemyError as exc:
        cause = type(getattr(exc, "orig", None) or exc).__name__
        fail([f"cannot use DATABASE_URL ({cause}): check the URL and that the server is up."])
    finally:
        engine.dispose()


def check_slack_token(settings: Settings) -> None:
    """Ask Slack once who we are: a revoked or mistyped token stops the start right here."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError, SlackClientError

    client = WebClient(
        token=settings.slack_bot_token.reveal(), base_url=settings.slack_api_url, timeout=5
    )
    try:
        identity = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error") or exc.response.status_code
        if error in ("invalid_auth", "not_authed", "account_inactive", "token_revoked"):
            fail(
                [
                    f"Slack refused SLACK_BOT_TOKEN ({error}): copy it again from "
                    "OAuth & Permissions."
                ]
            )
        log.warning("slack_auth_test_failed error=%s starting_anyway=true", error)
        return
    except (SlackClientError, OSError) as exc:
        log.warning("slack_unreachable error=%s starting_anyway=true", type(exc).__name__)
        return
    log.info("slack_identity bot_user=%s team=%s", identity.get("user_id"), identity.get("team_id"))


def main() -> None:
    load_dotenv(os.environ.get("DOTENV_PATH", ".env"), override=False)
    if sys.argv[1:] == ["migrate"]:
        migrate_only()
        return
    if sys.argv[1:2] == ["audit"]:
        audit_export(sys.argv[2:])
        return
    if not (os.environ.get("SLACK_BOT_TOKEN") or os.environ.get("SLACK_APP_TOKEN")):
        try:
            from rehearsal.main import main as rehearse  # no Slack at all: rehearse locally
        except ImportError:  # an installed image carries the bot only
            fail(["SLACK_BOT_TOKEN is not set: see .env.example for every setting."])
            return
        sys.exit(rehearse(sys.argv[1:]))
    try:
        settings = load_settings(needs_keys=needs_static_keys())
    except SettingsError as exc:
        fail([*exc.problems, "See .env.example for every setting."])
        return
    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as exc:
        fail([f"policy {settings.policy_file}: {exc}"])
        return
    configure_logging(settings)
    log.info(
        "policy_loaded file=%s hash=%s", settings.policy_file, policy_hash(settings.policy_file)
    )
    if settings.socket_mode:
        prepare(settings)
        serve_socket_mode(settings, policy)
    else:
        log.info("started mode=http port=%s policy=%s", settings.port, settings.policy_file)
        from bot.server import serve

        # In HTTP mode the worker prepares: gunicorn's master then holds neither Slack's SDK
        # nor SQLAlchemy, which would otherwise sit in memory twice.
        serve(settings, policy, lambda: prepare(settings))


def prepare(settings: Settings) -> None:
    """The checks before serving; each failure ends the start with one clear line."""
    check_slack_token(settings)
    prepare_database(settings.database_url.reveal(), settings.migrate_on_start)


def needs_static_keys() -> bool:
    """Whether TENCENTCLOUD_SECRET_ID/KEY must be set: yes, unless the policy (read early,
    and again below to report its problems) gives every account another source of keys."""
    try:
        policy = load_policy(os.environ.get("POLICY_FILE") or "policy.yaml")
    except PolicyError:
        return True
    return any(
        a.kind == "env" or (a.kind == "assume_role" and a.base is None) for a in policy.accounts
    )


def migrate_only() -> None:
    """`python -m bot migrate`: needs only DATABASE_URL."""
    from bot.config import DEFAULT_DATABASE_URL
    from bot.migrate import head

    prepare_database(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL, migrate=True)
    print(f"killtask: database schema is at {head()}")


def audit_export(argv: list[str]) -> None:
    """`python -m bot audit [--since 7d] [--until …] [--instance …] [--format csv|jsonl]`:
    needs only DATABASE_URL; the log goes to stdout, a count to stderr."""
    from bot.config import DEFAULT_DATABASE_URL
    from bot.export import main as export

    sys.exit(export(argv, os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL))


def serve_socket_mode(settings: Settings, policy: Policy) -> None:
    """One process: the WebSocket to Slack, the work after the ack, the clock, and a small
    HTTP listener on HEALTH_PORT for /healthz, /readyz and /metrics."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.app import build_bot
    from bot.health import health_app, serve_health

    bot = build_bot(settings, policy)
    assert settings.slack_app_token is not None
    handler = SocketModeHandler(
        bot.app, settings.slack_app_token.reveal(), web_client=bot.app.client
    )
    bot.readiness.connected = handler.client.is_connected
    bot.start()
    stop_health = serve_health(settings.host, settings.health_port, health_app(bot.readiness))

    def stop(_signum, _frame) -> None:  # type: ignore[no-untyped-def]
        log.info("shutdown signal=SIGTERM finishing_in_flight=true")
        handler.close()
        bot.shutdown()
        stop_health()
        sys.exit(0)

    def reload(_signum, _frame) -> None:  # type: ignore[no-untyped-def]
        threading.Thread(target=bot.reload_policy, name="policy-reload").start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    log.info(
        "started mode=socket health_port=%s policy=%s", settings.health_port, settings.policy_file
    )
    handler.start()


if __name__ == "__main__":
    main()
