"""The effect of a kill task: samples of its matching sessions, the card's summary of them,
a claim so one replica samples each task, and what a one-shot kill did.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "effect_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("matching", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
    )
    op.create_index("ix_effect_samples_request", "effect_samples", ["request_id", "at"])
    with op.batch_alter_table("kill_requests") as batch:
        batch.add_column(sa.Column("effect", sa.Text))
        batch.add_column(sa.Column("kill_result", sa.Text))
        batch.add_column(sa.Column("sampled_at", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("kill_requests") as batch:
        batch.drop_column("sampled_at")
        batch.drop_column("kill_result")
        batch.drop_column("effect")
    op.drop_index("ix_effect_samples_request", "effect_samples")
    op.drop_table("effect_samples")
