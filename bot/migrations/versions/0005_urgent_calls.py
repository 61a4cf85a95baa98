"""Mark the DBbrain calls that stop or start a task, so reads can be held to a share of each
second and never delay them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Calls recorded before this are counted as reads: the safe side, and gone within 60 s.
    with op.batch_alter_table("cloud_calls") as batch:
        batch.add_column(sa.Column("urgent", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("cloud_calls") as batch:
        batch.alter_column("urgent", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("cloud_calls") as batch:
        batch.drop_column("urgent")
