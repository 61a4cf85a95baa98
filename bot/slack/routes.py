"""The whole Slack surface at a glance: every command, button and view the bot answers."""

from __future__ import annotations

from slack_bolt import App

from bot.slack.handlers import Handlers
from bot.slack.home import HOME_BUTTONS, Home
from bot.slack.modal import INSTANCE_PICKER, MODAL_CALLBACK
from bot.slack.picking import SHORTCUT_CALLBACK, Picking

BUTTONS = ("approve", "reject", "stop", "refresh_preview")


def register(app: App, handlers: Handlers, picking: Picking, home: Home) -> None:
    app.command("/killtask")(handlers.command)
    app.view(MODAL_CALLBACK)(handlers.modal_submitted)
    app.options(INSTANCE_PICKER)(picking.instance_options)
    app.shortcut(SHORTCUT_CALLBACK)(picking.from_message)
    for action_id in BUTTONS:
        app.action(action_id)(handlers.button)
    app.event("app_home_opened")(home.opened)
    for action_id in HOME_BUTTONS:
        app.action(action_id)(home.button)
