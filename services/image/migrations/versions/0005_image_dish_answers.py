"""ImageService: the dish model's answers, by recipe text.

dish_answers keeps what the optional dish model said about a recipe, keyed by
the SHA-256 of the recipe's text (recipes.model_dish.recipe_hash) and the
model: the same recipe is asked about once.

Revision ID: 0005_image_dish_answers
Revises: 0004_image_cache_entry_creator
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_image_dish_answers"
down_revision: str | None = "0004_image_cache_entry_creator"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dish_answers",
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("dish", sa.String(80), nullable=False),
        sa.Column("cuisine", sa.String(80), nullable=False),
        sa.Column("main_ingredients", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("content_hash", "model", name="pk_dish_answers"),
    )


def downgrade() -> None:
    op.drop_table("dish_answers")
