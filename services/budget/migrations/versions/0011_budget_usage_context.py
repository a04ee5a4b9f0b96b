"""budget: the usage ledger's context for cost optimization

- budget_usage_records.dish_key: SHA-256 hex of the dish a built prompt was
  for (what a similar-dish hit matches on), with a partial index (dish_key,
  created_at) for "was this dish generated before".
- similar_allowed, custom_prompt: how the request was made.
- image_id: the image an attempt generated or served, with a partial index
  over cache hits for "was this generation's image served again".

NULL in the records written before this revision: the analysis leaves them
out of the figures that need them. Adding nullable columns needs no copy of
the ledger on SQLite, so its triggers stay as they are.

Revision ID: 0011_budget_usage_context
Revises: 0010_budget_credits
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_budget_usage_context"
down_revision = "0010_budget_credits"
branch_labels = None
depends_on = None

USAGE = "budget_usage_records"
DISH_INDEX = "ix_budget_usage_records_dish_key_created_at"
HAS_DISH = sa.text("dish_key IS NOT NULL")
IMAGE_INDEX = "ix_budget_usage_records_image_id_hits"
SERVED_IMAGE = sa.text("cached AND image_id IS NOT NULL")


def upgrade() -> None:
    op.add_column(USAGE, sa.Column("dish_key", sa.String(64), nullable=True))
    op.add_column(USAGE, sa.Column("similar_allowed", sa.Boolean(), nullable=True))
    op.add_column(USAGE, sa.Column("custom_prompt", sa.Boolean(), nullable=True))
    op.add_column(USAGE, sa.Column("image_id", sa.String(64), nullable=True))
    op.create_index(
        DISH_INDEX,
        USAGE,
        ["dish_key", "created_at"],
        postgresql_where=HAS_DISH,
        sqlite_where=HAS_DISH,
    )
    op.create_index(
        IMAGE_INDEX,
        USAGE,
        ["image_id"],
        postgresql_where=SERVED_IMAGE,
        sqlite_where=SERVED_IMAGE,
    )


def downgrade() -> None:
    op.drop_index(IMAGE_INDEX, USAGE)
    op.drop_index(DISH_INDEX, USAGE)
    for column in ("image_id", "custom_prompt", "similar_allowed", "dish_key"):
        op.drop_column(USAGE, column)
