"""ImageService: which attempt generated each cache entry.

cache_entries gains created_by_user_id and created_by_request_id (NULL for
entries made before), indexed together: a retry of a completed request_id is
served the image that attempt paid for and no other.

Revision ID: 0004_image_cache_entry_creator
Revises: 0003_image_settlements
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_image_cache_entry_creator"
down_revision: str | None = "0003_image_settlements"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cache_entries") as batch:
        batch.add_column(sa.Column("created_by_user_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("created_by_request_id", sa.String(200), nullable=True))
    op.create_index(
        "ix_cache_entries_created_by",
        "cache_entries",
        ["created_by_user_id", "created_by_request_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_cache_entries_created_by", table_name="cache_entries")
    with op.batch_alter_table("cache_entries") as batch:
        batch.drop_column("created_by_request_id")
        batch.drop_column("created_by_user_id")
