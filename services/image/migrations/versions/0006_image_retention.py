"""ImageService: image retention.

images.unreferenced_since is when the retention job first found nothing
referring to an image (NULL while something does); images.pinned marks the
fallback image, which is never deleted.

Revision ID: 0006_image_retention
Revises: 0005_image_dish_answers
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_image_retention"
down_revision: str | None = "0005_image_dish_answers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("unreferenced_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_images_unreferenced_since", "images", ["unreferenced_since"])


def downgrade() -> None:
    op.drop_index("ix_images_unreferenced_since", table_name="images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("pinned")
        batch.drop_column("unreferenced_since")
