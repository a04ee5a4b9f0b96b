"""budget: the limit each window was last held against, and the ledger by time

- budget_windows.limit_micros: the window's limit as of the last hold or limit
  change (NULL: none yet). A commit's one window statement returns it with the
  new spent, so a threshold alert is detected with no extra round trip.
- ix_budget_usage_records_created_at: the alert evaluator's system-wide
  counts of a recent range (burn rate, failures, cache hits) read an index
  range, not the whole ledger.
- ix_budget_usage_daily_day: its per-user "today" and baseline figures, by day.

Adding a nullable column needs no copy of a table on SQLite.

Revision ID: 0008_budget_window_limits
Revises: 0007_budget_alerts
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_budget_window_limits"
down_revision = "0007_budget_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("budget_windows", sa.Column("limit_micros", sa.BigInteger(), nullable=True))
    op.create_index("ix_budget_usage_records_created_at", "budget_usage_records", ["created_at"])
    op.create_index("ix_budget_usage_daily_day", "budget_usage_daily", ["day"])


def downgrade() -> None:
    op.drop_index("ix_budget_usage_daily_day", "budget_usage_daily")
    op.drop_index("ix_budget_usage_records_created_at", "budget_usage_records")
    op.drop_column("budget_windows", "limit_micros")
