"""The store: the only package that imports SQLAlchemy. It owns the tables (`tables`), the
requests and their audit log (`records`), and the rate limit shared by replicas (`ratelimit`)."""

from bot.store.ratelimit import SharedRateLimit
from bot.store.records import Store
from bot.store.tables import (
    StoreError,
    approvals,
    audit_log,
    bot_processes,
    cloud_calls,
    effect_samples,
    kill_requests,
    make_engine,
    metadata,
    rate_lock,
)

__all__ = [
    "SharedRateLimit",
    "Store",
    "StoreError",
    "approvals",
    "audit_log",
    "bot_processes",
    "cloud_calls",
    "effect_samples",
    "kill_requests",
    "make_engine",
    "metadata",
    "rate_lock",
]
