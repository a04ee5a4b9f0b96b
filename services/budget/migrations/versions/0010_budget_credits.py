"""budget: management tools: credits, and indexes for the near-limit list and
the ledger's export

- budget_credits: one-off amounts an admin granted to a window instance.
- budget_windows.credit_micros: the sum of the credits granted to the window
  (the hold looks at budget_credits only when it is not zero), and an index
  (scope, kind, start_date) over the current windows for ListUsersNearLimits.
- budget_usage_records: an index (user_id, id) for one user's export in id
  order.
- budget_audit_log: the action grant_credit.

SQLite changes a constraint only by copying the table; the copy would drop the
audit log's append-only triggers, so they are read from sqlite_master first
and recreated (as in 0005).

Revision ID: 0010_budget_credits
Revises: 0009_budget_system_rollups
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

from services.common.db import NAMING_CONVENTION

revision = "0010_budget_credits"
down_revision = "0009_budget_system_rollups"
branch_labels = None
depends_on = None

Instant = sa.DateTime(timezone=True)
ACTIONS = (
    "set_user_tier",
    "set_user_limits",
    "set_spend_cap",
    "set_system_limits",
    "block_user",
    "unblock_user",
    "set_user_rate_limits",
)
NEW_ACTIONS = (*ACTIONS, "grant_credit")
WINDOWS_INDEX = "ix_budget_windows_scope_kind_start_date"
EXPORT_INDEX = "ix_budget_usage_records_user_id_id"
CREDITS_INDEX = "ix_budget_credits_window_expires_at"


@contextmanager
def _altered(table: str) -> Iterator[BatchOperations]:
    """Change a table (a copy on SQLite), keeping its triggers."""
    bind = op.get_bind()
    triggers: list[str] = []
    if bind.dialect.name == "sqlite":
        found = bind.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table"),
            {"table": table},
        ).all()
        triggers = [str(row[0]) for row in found]
    with op.batch_alter_table(table, naming_convention=NAMING_CONVENTION) as batch:
        yield batch
    for sql in triggers:
        op.execute(sql)


def _set_actions(actions: tuple[str, ...]) -> None:
    check = "action IN (" + ", ".join(f"'{a}'" for a in actions) + ")"
    with _altered("budget_audit_log") as batch:
        batch.drop_constraint(op.f("ck_budget_audit_log_action"), type_="check")
        batch.create_check_constraint(op.f("ck_budget_audit_log_action"), check)


def upgrade() -> None:
    op.create_table(
        "budget_credits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("expires_at", Instant, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_budget_credits"),
        sa.CheckConstraint("scope IN ('user', 'system')", name=op.f("ck_budget_credits_scope")),
        sa.CheckConstraint("kind IN ('day', 'month')", name=op.f("ck_budget_credits_kind")),
        sa.CheckConstraint("amount_micros > 0", name=op.f("ck_budget_credits_amount_positive")),
    )
    op.create_index(
        CREDITS_INDEX,
        "budget_credits",
        ["scope", "subject", "kind", "start_date", "expires_at"],
    )
    op.add_column(
        "budget_windows",
        sa.Column("credit_micros", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index(WINDOWS_INDEX, "budget_windows", ["scope", "kind", "start_date"])
    op.create_index(EXPORT_INDEX, "budget_usage_records", ["user_id", "id"])
    _set_actions(NEW_ACTIONS)


def downgrade() -> None:
    """Back to 0006: only while the audit log has no grant_credit entry."""
    _set_actions(ACTIONS)
    op.drop_index(EXPORT_INDEX, "budget_usage_records")
    op.drop_index(WINDOWS_INDEX, "budget_windows")
    with _altered("budget_windows") as batch:
        batch.drop_column("credit_micros")
    op.drop_index(CREDITS_INDEX, "budget_credits")
    op.drop_table("budget_credits")
