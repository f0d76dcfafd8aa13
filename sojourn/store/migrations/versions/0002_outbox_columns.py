"""One column set for the three outboxes, and a row per delivery attempt.

Native webhook deliveries learn their URL (copied from their webhook; '' where the webhook is gone, whose
deliveries fail anyway), Task Engine callbacks their last status code, callbacks and fastlane hooks when they
were delivered. ``delivery_attempts`` records every attempt; fastlane's ``webhookDispatch`` is read from it
(entries recorded before stay in the execution's metadata and are shown first).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_attempts",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("delivery_id", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("kind", "delivery_id", "attempt", name="uq_delivery_attempts_kind_delivery_attempt"),
    )
    op.create_index("ix_delivery_attempts_delivery_id", "delivery_attempts", ["delivery_id"], unique=False)
    with op.batch_alter_table("fastlane_hook_deliveries") as batch:
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("taskengine_callbacks") as batch:
        batch.add_column(sa.Column("last_status_code", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("url", sa.String(), nullable=True))
    op.execute("UPDATE webhook_deliveries SET url = COALESCE((SELECT webhooks.url FROM webhooks WHERE webhooks.id = webhook_deliveries.webhook_id), '')")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.alter_column("url", existing_type=sa.String(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("url")
    with op.batch_alter_table("taskengine_callbacks") as batch:
        batch.drop_column("delivered_at")
        batch.drop_column("last_status_code")
    with op.batch_alter_table("fastlane_hook_deliveries") as batch:
        batch.drop_column("delivered_at")
    op.drop_index("ix_delivery_attempts_delivery_id", table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
