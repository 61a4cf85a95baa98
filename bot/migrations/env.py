"""Alembic's entry point; the bot passes its own connection in (see bot.migrate)."""

from alembic import context

from bot.store import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the bot always passes one
    raise SystemExit("Run migrations with: python -m bot migrate")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
