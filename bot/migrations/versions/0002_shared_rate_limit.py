"""DBbrain calls of every replica, counted together against the 20-per-second limit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cloud_calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_cloud_calls_at", "cloud_calls", ["at"])
    op.create_table(
        "rate_lock",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.bulk_insert(sa.table("rate_lock", sa.column("id"), sa.column("n")), [{"id": 1, "n": 0}])


def downgrade() -> None:
    op.drop_table("rate_lock")
    op.drop_table("cloud_calls")
