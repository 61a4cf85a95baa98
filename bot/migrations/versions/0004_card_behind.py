"""Find cards that are behind through an index, not a scan of every request ever filed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kill_requests") as batch:
        batch.add_column(
            sa.Column("card_behind", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.execute("UPDATE kill_requests SET card_behind = (card_rev > card_synced_rev)")
    with op.batch_alter_table("kill_requests") as batch:
        batch.alter_column("card_behind", server_default=None)
    op.drop_index("ix_kill_requests_card", "kill_requests")
    op.create_index("ix_kill_requests_card_behind", "kill_requests", ["card_behind"])
    op.create_index("ix_kill_requests_message_ts", "kill_requests", ["message_ts"])


def downgrade() -> None:
    op.drop_index("ix_kill_requests_message_ts", "kill_requests")
    op.drop_index("ix_kill_requests_card_behind", "kill_requests")
    op.create_index("ix_kill_requests_card", "kill_requests", ["card_synced_rev", "card_rev"])
    with op.batch_alter_table("kill_requests") as batch:
        batch.drop_column("card_behind")
