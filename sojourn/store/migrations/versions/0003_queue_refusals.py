"""Submissions refused with QUEUE_FULL, counted per minute across API processes (``/pressure``'s recentlyRejected).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_refusals",
        sa.Column("minute", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("minute"),
    )


def downgrade() -> None:
    op.drop_table("queue_refusals")
