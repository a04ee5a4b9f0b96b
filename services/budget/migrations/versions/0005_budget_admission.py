"""budget: admission control: rate states (GCRA), blocks, rate overrides

- budget_rate_states: one theoretical arrival time a rate rule's key, so every
  replica enforces one shared limit.
- budget_blocks: users' blocks, kept when lifted or expired.
- budget_users: an admin's overrides of the tier's rate rules and cap.
- budget_reservations: an index to count a user's held reservations.
- budget_audit_log: the actions block_user, unblock_user, set_user_rate_limits.

SQLite changes a constraint only by copying the table; the copy would drop the
table's triggers (the audit log's append-only ones, the users' money bounds),
so they are read from sqlite_master first and recreated.

Revision ID: 0005_budget_admission
Revises: 0004_budget_user_scoped_keys
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

from services.common.db import NAMING_CONVENTION

revision = "0005_budget_admission"
down_revision = "0004_budget_user_scoped_keys"
branch_labels = None
depends_on = None

Instant = sa.DateTime(timezone=True)
RATE_OVERRIDE_COLUMNS = (
    "override_requests_per_minute",
    "override_request_burst",
    "override_generations_per_hour",
    "override_max_concurrent_generations",
)
ACTIONS = ("set_user_tier", "set_user_limits", "set_spend_cap", "set_system_limits")
NEW_ACTIONS = (*ACTIONS, "block_user", "unblock_user", "set_user_rate_limits")


def _action_check(actions: tuple[str, ...]) -> str:
    return "action IN (" + ", ".join(f"'{a}'" for a in actions) + ")"


@contextmanager
def _altered(table: str) -> Iterator[BatchOperations]:
    """Change a table (a copy on SQLite), keeping its triggers."""
    bind = op.get_bind()
    triggers: list[tuple[str]] = []
    if bind.dialect.name == "sqlite":
        found = bind.execute(
            sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table"),
            {"table": table},
        ).all()
        triggers = [(str(row[0]),) for row in found]
    with op.batch_alter_table(table, naming_convention=NAMING_CONVENTION) as batch:
        yield batch
    for (sql,) in triggers:
        op.execute(sql)


def _set_actions(actions: tuple[str, ...]) -> None:
    with _altered("budget_audit_log") as batch:
        batch.drop_constraint(op.f("ck_budget_audit_log_action"), type_="check")
        batch.create_check_constraint(op.f("ck_budget_audit_log_action"), _action_check(actions))


def upgrade() -> None:
    op.create_table(
        "budget_rate_states",
        sa.Column("key", sa.String(232), nullable=False),
        sa.Column("tat", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_budget_rate_states"),
    )
    op.create_table(
        "budget_blocks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("expires_at", Instant, nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("level", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lifted_at", Instant, nullable=True),
        sa.Column("lifted_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_budget_blocks"),
        sa.CheckConstraint(
            "source IN ('admin', 'automatic')", name=op.f("ck_budget_blocks_source")
        ),
        sa.CheckConstraint("level >= 0", name=op.f("ck_budget_blocks_level_not_negative")),
    )
    op.create_index("ix_budget_blocks_user_id_lifted_at", "budget_blocks", ["user_id", "lifted_at"])
    op.create_index("ix_budget_blocks_lifted_at_id", "budget_blocks", ["lifted_at", "id"])
    with _altered("budget_users") as batch:
        for column in RATE_OVERRIDE_COLUMNS:
            batch.add_column(sa.Column(column, sa.BigInteger(), nullable=True))
            batch.create_check_constraint(
                op.f(f"ck_budget_users_{column}_positive"), f"{column} > 0"
            )
    op.create_index(
        "ix_budget_reservations_user_id_state", "budget_reservations", ["user_id", "state"]
    )
    _set_actions(NEW_ACTIONS)


def downgrade() -> None:
    """Back to 0004: only while the audit log has no entry of the new actions."""
    _set_actions(ACTIONS)
    op.drop_index("ix_budget_reservations_user_id_state", "budget_reservations")
    with _altered("budget_users") as batch:
        for column in RATE_OVERRIDE_COLUMNS:
            batch.drop_constraint(op.f(f"ck_budget_users_{column}_positive"), type_="check")
            batch.drop_column(column)
    op.drop_index("ix_budget_blocks_lifted_at_id", "budget_blocks")
    op.drop_index("ix_budget_blocks_user_id_lifted_at", "budget_blocks")
    op.drop_table("budget_blocks")
    op.drop_table("budget_rate_states")
