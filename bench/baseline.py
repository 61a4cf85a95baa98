"""The baseline: a bare Bolt app whose /killtask and buttons only ack, on the bot's server stack.

It runs through `bot.server` itself (the same gunicorn options: gthread, 1 worker, 16 threads;
the same signature check, WSGI adapter and routing, with /healthz and /readyz), so the only
difference from the bot is what the listeners do. Started by the benchmark as
`python -m bench.baseline`; reads PORT, HOST, SLACK_SIGNING_SECRET and SLACK_API_URL (the fake
Slack).
"""

from __future__ import annotations

import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.health import Readiness
from bot.server import _Server, wsgi_app


def bare_app(signing_secret: str, slack_api_url: str) -> App:
    # Like the bot's, this client answers Bolt's one auth.test (then cached) from the fake Slack.
    client = WebClient(token="xoxb-bench-token", base_url=slack_api_url)
    app = App(
        client=client,
        signing_secret=signing_secret,
        listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="slack-listener"),
        token_verification_enabled=False,
        # Bolt's default: the listener runs on a thread of Bolt's, which the request's thread
        # polls for the ack every 10 ms. BENCH_BASELINE_INLINE=1 runs it inline, as the bot does.
        process_before_response=os.environ.get("BENCH_BASELINE_INLINE") == "1",
    )

    def only_ack(ack: Ack) -> None:
        ack()

    app.command("/killtask")(only_ack)
    for action_id in ("approve", "reject", "stop"):
        app.action(action_id)(only_ack)
    return app


class _Baseline(_Server):
    def load(self):  # type: ignore[no-untyped-def]
        secret = os.environ["SLACK_SIGNING_SECRET"]
        readiness = Readiness(ping=lambda: None)  # no database: always ready
        readiness.start()
        bare = SimpleNamespace(
            app=bare_app(secret, os.environ["SLACK_API_URL"]), readiness=readiness
        )
        return wsgi_app(bare, secret)  # type: ignore[arg-type]


def main() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(os.environ.get("LOG_LEVEL", "INFO"))
    settings = SimpleNamespace(
        host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "3000"))
    )
    _Baseline(settings, None, lambda: None).run()  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
