"""ImageService: the settlement outbox.

pending_settlements holds each commit or release owed to BudgetService from
before its first attempt until BudgetService acknowledges it, so spend the
provider took is never lost when BudgetService cannot be reached.

Revision ID: 0003_image_settlements
Revises: 0002_image_similar_cache
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_image_settlements"
down_revision: str | None = "0002_image_similar_cache"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_settlements",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("reservation_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actual_cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("usage", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("abandoned_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pending_settlements"),
    )
    op.create_index(
        "ix_pending_settlements_next_attempt_at",
        "pending_settlements",
        ["abandoned_at", "next_attempt_at"],
    )
    op.create_index(
        "ix_pending_settlements_reservation_id", "pending_settlements", ["reservation_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_pending_settlements_reservation_id", table_name="pending_settlements")
    op.drop_index("ix_pending_settlements_next_attempt_at", table_name="pending_settlements")
    op.drop_table("pending_settlements")
