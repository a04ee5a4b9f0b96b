"""ImageService: the similar-dish cache, lifetime statistics, single flight.

cache_entries gains match_key (indexed with expires_at: similar candidates are
an index range, never a scan), quality_rank, uses (indexed: the most used
entries), invalidated_at; cache_totals keeps the counts of purged entries;
generation_leases holds one row per cache key being generated.

Revision ID: 0002_image_similar_cache
Revises: 0001_image_initial
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_image_similar_cache"
down_revision: str | None = "0001_image_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# cache_policy.QUALITY_RANKS at the time of this migration.
_RANKS = {"low": 1, "medium": 2, "standard": 2, "high": 3, "hd": 3, "xhigh": 4, "max": 5}


def upgrade() -> None:
    with op.batch_alter_table("cache_entries") as batch:
        batch.add_column(sa.Column("quality_rank", sa.SmallInteger(), nullable=True))
        batch.add_column(sa.Column("match_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("uses", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("invalidated_at", sa.DateTime(timezone=True), nullable=True))
    entries = sa.table(
        "cache_entries",
        sa.column("quality", sa.String),
        sa.column("quality_rank", sa.SmallInteger),
        sa.column("uses", sa.BigInteger),
        sa.column("exact_hits", sa.BigInteger),
        sa.column("similar_hits", sa.BigInteger),
    )
    rank = sa.case(*[(entries.c.quality == name, value) for name, value in _RANKS.items()], else_=0)
    op.execute(
        entries.update().values(
            quality_rank=rank, uses=entries.c.exact_hits + entries.c.similar_hits
        )
    )
    with op.batch_alter_table("cache_entries") as batch:
        batch.alter_column("quality_rank", existing_type=sa.SmallInteger(), nullable=False)
        batch.alter_column("uses", existing_type=sa.BigInteger(), nullable=False)
    op.create_index("ix_cache_entries_match_key", "cache_entries", ["match_key", "expires_at"])
    op.create_index("ix_cache_entries_uses", "cache_entries", ["uses", "id"])

    op.create_table(
        "cache_totals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purged_entries", sa.BigInteger(), nullable=False),
        sa.Column("exact_hits", sa.BigInteger(), nullable=False),
        sa.Column("similar_hits", sa.BigInteger(), nullable=False),
        sa.Column("cost_saved_micros", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cache_totals"),
    )
    op.create_table(
        "generation_leases",
        sa.Column("cache_key", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cache_key", name="pk_generation_leases"),
    )


def downgrade() -> None:
    op.drop_table("generation_leases")
    op.drop_table("cache_totals")
    op.drop_index("ix_cache_entries_uses", table_name="cache_entries")
    op.drop_index("ix_cache_entries_match_key", table_name="cache_entries")
    with op.batch_alter_table("cache_entries") as batch:
        batch.drop_column("invalidated_at")
        batch.drop_column("uses")
        batch.drop_column("match_key")
        batch.drop_column("quality_rank")
