"""ImageService: the most-used index in GetCacheStats' order.

GetCacheStats lists live entries by uses, most first, ties oldest (lowest id)
first. The index on (uses, id) could not give that mixed order, so every
call sorted all live entries (60 ms at 100,000); on (uses DESC, id) a page is
a range of the index.

Revision ID: 0008_image_uses_order
Revises: 0007_image_cache_lifetime_totals
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_image_uses_order"
down_revision: str | None = "0007_image_cache_lifetime_totals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_cache_entries_uses", table_name="cache_entries")
    op.create_index("ix_cache_entries_uses", "cache_entries", [sa.text("uses DESC"), "id"])


def downgrade() -> None:
    op.drop_index("ix_cache_entries_uses", table_name="cache_entries")
    op.create_index("ix_cache_entries_uses", "cache_entries", ["uses", "id"])
