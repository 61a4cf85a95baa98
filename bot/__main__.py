"""Start-up: load .env, check settings and policy, then serve Socket Mode or HTTP (gunicorn)."""

from __future__ import annotations

import logging
import os
import signal
import sys

from dotenv import load_dotenv

from bot.config import RedactSecrets, Settings, SettingsError, load_settings
from bot.policy import PolicyError, load_policy

log = logging.getLogger("bot")


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    handler.addFilter(RedactSecrets(settings.secrets()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # The Tencent SDK's debug output prints tokens and signatures: keep it quiet always.
    logging.getLogger("tencentcloud_sdk_common").setLevel(logging.WARNING)
    logging.getLogger("slack_bolt").setLevel(max(logging.INFO, root.level))
    logging.getLogger("alembic").setLevel(logging.WARNING)


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
    if sys.argv[1:2] == ["work"] and len(sys.argv) == 4:
        serve_work(sys.argv[2], int(sys.argv[3]))
        return
    if not (os.environ.get("SLACK_BOT_TOKEN") or os.environ.get("SLACK_APP_TOKEN")):
        from rehearsal.main import main as rehearse  # no Slack at all: rehearse locally

        sys.exit(rehearse(sys.argv[1:]))
    try:
        settings = load_settings()
    except SettingsError as exc:
        fail([*exc.problems, "See .env.example for every setting."])
        return
    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as exc:
        fail([f"policy {settings.policy_file}: {exc}"])
        return
    configure_logging(settings)
    # Started first so its imports overlap the checks below; it waits for the word to begin.
    work = start_work_process()
    try:
        check_slack_token(settings)
        prepare_database(settings.database_url.reveal(), settings.migrate_on_start)
    except SystemExit:
        work.stop()
        raise
    work.go()  # the schema is ready: the work process may touch the database now
    if settings.socket_mode:
        serve_socket_mode(settings, policy, work)
    else:
        serve_http(settings, policy, work)


def migrate_only() -> None:
    """`python -m bot migrate`: needs only DATABASE_URL."""
    from bot.config import DEFAULT_DATABASE_URL
    from bot.migrate import head

    prepare_database(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL, migrate=True)
    print(f"killtask: database schema is at {head()}")


def start_work_process():  # type: ignore[no-untyped-def]
    from bot.work import WorkProcess

    work = WorkProcess()
    work.start()
    return work


def serve_work(path: str, lifeline_fd: int) -> None:
    """`python -m bot work`: the process the main one starts to run everything after the acks."""
    from bot.app import build_worker
    from bot.work import NICE, serve

    # Signals go to the main process, which stops the listeners first and then closes the
    # lifeline; this process exits when the lifeline closes, after finishing what it holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.nice(NICE)
    settings = load_settings()
    configure_logging(settings)
    worker = build_worker(settings, load_policy(settings.policy_file))
    if not os.read(lifeline_fd, 1):
        return  # the main process stopped before the database was ready: nothing to do
    worker.start()
    try:
        serve(path, lifeline_fd, worker.run)
    finally:
        worker.stop()
    log.info("work_process_stopped pid=%s", os.getpid())


def serve_socket_mode(settings: Settings, policy, work) -> None:  # type: ignore[no-untyped-def]
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.app import build_bot, web_client
    from bot.work import WorkChannel

    bot = build_bot(settings, policy, WorkChannel(work.path))
    assert settings.slack_app_token is not None
    handler = SocketModeHandler(
        bot.app, settings.slack_app_token.reveal(), web_client=web_client(settings)
    )

    def stop(_signum, _frame) -> None:  # type: ignore[no-untyped-def]
        log.info("shutdown signal=SIGTERM finishing_in_flight=true")
        handler.close()
        bot.shutdown()
        work.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if not work.wait_ready():
        log.error("work_process_not_ready seconds=10 starting_anyway=true")
    log.info("started mode=socket policy=%s", settings.policy_file)
    handler.start()


def serve_http(settings: Settings, policy, work) -> None:  # type: ignore[no-untyped-def]
    from bot.server import serve

    log.info("started mode=http port=%s policy=%s", settings.port, settings.policy_file)
    serve(settings, policy, work)


if __name__ == "__main__":
    main()
