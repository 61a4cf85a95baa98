"""The live preview shown on each request's card.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kill_requests") as batch:
        batch.add_column(sa.Column("preview", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("kill_requests") as batch:
        batch.drop_column("preview")
