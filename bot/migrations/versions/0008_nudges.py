"""Remember each reminder and escalation sent, so every replica sends each one once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kill_requests") as batch:
        batch.add_column(sa.Column("reminded_at", sa.Float))
        batch.add_column(sa.Column("escalated_at", sa.Float))
        batch.add_column(sa.Column("running_reminded_at", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("kill_requests") as batch:
        batch.drop_column("running_reminded_at")
        batch.drop_column("escalated_at")
        batch.drop_column("reminded_at")
