"""The first schema: requests, approvals, the audit log and the replicas' heartbeats.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kill_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source_key", sa.String(200), unique=True, nullable=True),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("requester_id", sa.String(32), nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("product", sa.String(16), nullable=False),
        sa.Column("duration", sa.Integer, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("break_glass", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("message_ts", sa.String(32)),
        sa.Column("decided_by", sa.String(32)),
        sa.Column("decided_at", sa.Float),
        sa.Column("started_at", sa.Float),
        sa.Column("ends_at", sa.Float),
        sa.Column("cloud_request_id", sa.String(64)),
        sa.Column("error_code", sa.String(100)),
        sa.Column("error_message", sa.Text),
        sa.Column("stopped_by", sa.String(32)),
        sa.Column("stopped_at", sa.Float),
        sa.Column("owner", sa.String(64)),
        sa.Column("card_rev", sa.Integer, nullable=False),
        sa.Column("card_synced_rev", sa.Integer, nullable=False),
        sa.Column("card_claimed_at", sa.Float),
    )
    op.create_index("ix_kill_requests_state_expires", "kill_requests", ["state", "expires_at"])
    op.create_index("ix_kill_requests_state_ends", "kill_requests", ["state", "ends_at"])
    op.create_index(
        "ix_kill_requests_instance", "kill_requests", ["instance_id", "product", "state"]
    )
    op.create_index("ix_kill_requests_channel", "kill_requests", ["channel_id", "state"])
    op.create_index("ix_kill_requests_card", "kill_requests", ["card_synced_rev", "card_rev"])
    op.create_table(
        "bot_processes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
    )
    op.create_table(
        "approvals",
        sa.Column("request_id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor_id", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("request_id", sa.Integer),
        sa.Column("channel_id", sa.String(32)),
        sa.Column("instance_id", sa.String(64)),
        sa.Column("cloud_request_id", sa.String(64)),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_audit_request", "audit_log", ["request_id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("approvals")
    op.drop_table("bot_processes")
    op.drop_table("kill_requests")
