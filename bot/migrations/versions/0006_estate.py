"""The instance list (DescribeDiagDBInstances) cached for every account, and each request's
account and region.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("instance_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("region", sa.String(40), nullable=False),
        sa.Column("product", sa.String(16), nullable=False),
        sa.Column("health_score", sa.Integer),
        sa.Column("event_count", sa.Integer),
        sa.Column("account", sa.String(40), nullable=False),
        sa.Column("fetched_at", sa.Float, nullable=False),
    )
    with op.batch_alter_table("kill_requests") as batch:
        batch.add_column(sa.Column("account", sa.String(40)))
        batch.add_column(sa.Column("region", sa.String(40)))


def downgrade() -> None:
    with op.batch_alter_table("kill_requests") as batch:
        batch.drop_column("region")
        batch.drop_column("account")
    op.drop_table("instances")
