"""budget: users, windows, reservations and the usage ledger

Revision ID: 0001_budget_initial
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_budget_initial"
down_revision = None
branch_labels = None
depends_on = None

# Instants: timestamptz on PostgreSQL, naive UTC text on SQLite (see models.UtcDateTime).
Instant = sa.DateTime(timezone=True)
# 64-bit autoincrement; SQLite autoincrements only INTEGER PRIMARY KEY.
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "budget_users",
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("updated_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_budget_users"),
        sa.CheckConstraint("tier IN ('free', 'premium', 'pro')", name="ck_budget_users_tier"),
    )

    op.create_table(
        "budget_windows",
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("reserved_micros", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("scope", "subject", "kind", "start_date", name="pk_budget_windows"),
        sa.CheckConstraint("scope IN ('user', 'system')", name="ck_budget_windows_scope"),
        sa.CheckConstraint("kind IN ('day', 'month')", name="ck_budget_windows_kind"),
        sa.CheckConstraint("spent_micros >= 0", name="ck_budget_windows_spent_not_negative"),
        sa.CheckConstraint("reserved_micros >= 0", name="ck_budget_windows_reserved_not_negative"),
    )

    op.create_table(
        "budget_reservations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("day_start", sa.Date(), nullable=False),
        sa.Column("month_start", sa.Date(), nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("expires_at", Instant, nullable=False),
        sa.Column("finished_at", Instant, nullable=True),
        sa.Column("committed_micros", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("overrun", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_budget_reservations"),
        sa.UniqueConstraint("idempotency_key", name="uq_budget_reservations_idempotency_key"),
        sa.CheckConstraint(
            "state IN ('held', 'committed', 'released', 'expired')",
            name="ck_budget_reservations_state",
        ),
        sa.CheckConstraint("amount_micros > 0", name="ck_budget_reservations_amount_positive"),
        sa.CheckConstraint(
            "committed_micros >= 0", name="ck_budget_reservations_committed_not_negative"
        ),
    )
    op.create_index("ix_budget_reservations_user_id", "budget_reservations", ["user_id"])
    op.create_index(
        "ix_budget_reservations_state_expires_at", "budget_reservations", ["state", "expires_at"]
    )

    op.create_table(
        "budget_usage_records",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("recipe_id", sa.String(200), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("prompt_length", sa.Integer(), nullable=False),
        sa.Column("size", sa.String(32), nullable=False),
        sa.Column("quality", sa.String(16), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("fallback_used", sa.Boolean(), nullable=False),
        sa.Column("generation_time_ms", sa.BigInteger(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("cache_hit", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("cost_saved_micros", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reservation_id", sa.String(32), nullable=True),
        sa.Column("created_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_budget_usage_records"),
        sa.UniqueConstraint("request_id", name="uq_budget_usage_records_request_id"),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["budget_reservations.id"],
            name="fk_budget_usage_records_reservation_id_budget_reservations",
        ),
        sa.CheckConstraint(
            "outcome IN ('generated', 'cache_hit_exact', 'cache_hit_similar', 'failed', "
            "'fallback', 'refused')",
            name="ck_budget_usage_records_outcome",
        ),
        sa.CheckConstraint("cost_micros >= 0", name="ck_budget_usage_records_cost_not_negative"),
        sa.CheckConstraint(
            "cost_saved_micros >= 0", name="ck_budget_usage_records_cost_saved_not_negative"
        ),
    )
    op.create_index(
        "ix_budget_usage_records_user_id_created_at",
        "budget_usage_records",
        ["user_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_budget_usage_records_user_id_created_at", "budget_usage_records")
    op.drop_table("budget_usage_records")
    op.drop_index("ix_budget_reservations_state_expires_at", "budget_reservations")
    op.drop_index("ix_budget_reservations_user_id", "budget_reservations")
    op.drop_table("budget_reservations")
    op.drop_table("budget_windows")
    op.drop_table("budget_users")
