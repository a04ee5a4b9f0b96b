"""budget: what each ledger record paid for

budget_usage_records.kind: "image" or "dish_recognition" (the optional dish
model's answer, recorded through RecordUsage with its cost);
NULL in the records written before this revision, all of them images. A
nullable column needs no copy of the ledger on SQLite, so its triggers stay.

Revision ID: 0014_budget_usage_kind
Revises: 0013_budget_optimization_rollups
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_budget_usage_kind"
down_revision = "0013_budget_optimization_rollups"
branch_labels = None
depends_on = None

USAGE = "budget_usage_records"


def upgrade() -> None:
    op.add_column(USAGE, sa.Column("kind", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column(USAGE, "kind")
