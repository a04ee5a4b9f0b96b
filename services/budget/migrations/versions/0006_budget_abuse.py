"""budget: abuse prevention: streak counts and prompt fingerprints

- budget_abuse_streaks: a user's count toward each abuse trigger, updated by
  one upsert in the transaction that writes the triggering record.
- budget_usage_records.prompt_fingerprint: a generated record's prompt
  without its noise, hashed (NULL for every other record), with a partial
  index (user, fingerprint, created_at) for the cache-busting count.

Adding a nullable column needs no copy of the ledger on SQLite, so its
triggers stay as they are.

Revision ID: 0006_budget_abuse
Revises: 0005_budget_admission
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_budget_abuse"
down_revision = "0005_budget_admission"
branch_labels = None
depends_on = None

Instant = sa.DateTime(timezone=True)
FINGERPRINT_INDEX = "ix_budget_usage_records_user_id_prompt_fingerprint_created_at"
HAS_FINGERPRINT = sa.text("prompt_fingerprint IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "budget_abuse_streaks",
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("window_start", Instant, nullable=False),
        sa.Column("last_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "kind", name="pk_budget_abuse_streaks"),
        sa.CheckConstraint("events >= 0", name=op.f("ck_budget_abuse_streaks_events_not_negative")),
    )
    op.add_column(
        "budget_usage_records", sa.Column("prompt_fingerprint", sa.String(64), nullable=True)
    )
    op.create_index(
        FINGERPRINT_INDEX,
        "budget_usage_records",
        ["user_id", "prompt_fingerprint", "created_at"],
        postgresql_where=HAS_FINGERPRINT,
        sqlite_where=HAS_FINGERPRINT,
    )


def downgrade() -> None:
    op.drop_index(FINGERPRINT_INDEX, "budget_usage_records")
    op.drop_column("budget_usage_records", "prompt_fingerprint")
    op.drop_table("budget_abuse_streaks")
