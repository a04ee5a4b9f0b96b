"""budget: the alert webhooks' outbox

- budget_webhook_deliveries: one row per (alert, destination), written in
  the transaction that raises the alert, kept pending until the destination
  acknowledges it (2xx). delivery_id is the id the receiver deduplicates on;
  body is sent unchanged on every attempt; next_attempt_at and lease_token
  are a deliverer's claim.

Revision ID: 0012_budget_webhook_deliveries
Revises: 0011_budget_usage_context
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_budget_webhook_deliveries"
down_revision = "0011_budget_usage_context"
branch_labels = None
depends_on = None

Instant = sa.DateTime(timezone=True)
PENDING = sa.text("delivered_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "budget_webhook_deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("delivery_id", sa.String(36), nullable=False),
        sa.Column("alert_id", sa.BigInteger(), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", Instant, nullable=False),
        sa.Column("lease_token", sa.String(36), nullable=True),
        sa.Column("last_error", sa.String(500), server_default=sa.text("''"), nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("delivered_at", Instant, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_budget_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["budget_alerts.id"],
            name="fk_budget_webhook_deliveries_alert_id_budget_alerts",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "alert_id", "destination", name="uq_budget_webhook_deliveries_alert_id"
        ),
        sa.UniqueConstraint("delivery_id", name="uq_budget_webhook_deliveries_delivery_id"),
    )
    op.create_index(
        "ix_budget_webhook_deliveries_pending",
        "budget_webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_budget_webhook_deliveries_pending", "budget_webhook_deliveries")
    op.drop_table("budget_webhook_deliveries")
