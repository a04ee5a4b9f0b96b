"""ImageService: GetCacheStats from totals kept on write.

cache_totals becomes the cache's lifetime figures: entries_added (every entry
ever stored: the misses), and exact_hits, similar_hits and cost_saved_micros
of every entry, live or purged (they held the purged entries' counts only).
Stored entries and flushed hit counts add to the one row as they are
written, so GetCacheStats reads it and counts only the expired entries not
purged yet (a short range of ix_cache_entries_expires_at), never the table.

Revision ID: 0007_image_cache_lifetime_totals
Revises: 0006_image_retention
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_image_cache_lifetime_totals"
down_revision: str | None = "0006_image_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cache_totals") as batch:
        batch.add_column(
            sa.Column("entries_added", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.execute(
        "INSERT INTO cache_totals "
        "(id, purged_entries, exact_hits, similar_hits, cost_saved_micros, entries_added) "
        "SELECT 1, 0, 0, 0, 0, 0 WHERE NOT EXISTS (SELECT 1 FROM cache_totals WHERE id = 1)"
    )
    op.execute(
        "UPDATE cache_totals SET "
        "entries_added = purged_entries + (SELECT count(*) FROM cache_entries), "
        "exact_hits = exact_hits + (SELECT coalesce(sum(exact_hits), 0) FROM cache_entries), "
        "similar_hits = similar_hits "
        "+ (SELECT coalesce(sum(similar_hits), 0) FROM cache_entries), "
        "cost_saved_micros = cost_saved_micros "
        "+ (SELECT coalesce(sum(cost_saved_micros), 0) FROM cache_entries) "
        "WHERE id = 1"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE cache_totals SET "
        "exact_hits = exact_hits - (SELECT coalesce(sum(exact_hits), 0) FROM cache_entries), "
        "similar_hits = similar_hits "
        "- (SELECT coalesce(sum(similar_hits), 0) FROM cache_entries), "
        "cost_saved_micros = cost_saved_micros "
        "- (SELECT coalesce(sum(cost_saved_micros), 0) FROM cache_entries) "
        "WHERE id = 1"
    )
    with op.batch_alter_table("cache_totals") as batch:
        batch.drop_column("entries_added")
