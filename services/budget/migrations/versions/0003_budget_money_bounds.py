"""budget: money bounds in the database, beside the edge's

Every stored amount of money is at most MONEY_BOUND_MICROS (one million USD),
the bound services/common/bounds.py enforces on every request, so that no sum
the service keeps can reach an int64 overflow. PostgreSQL checks it with CHECK
constraints; SQLite, which can add a CHECK only by copying a table (and would
lose the ledger's triggers with it), with BEFORE triggers.

Revision ID: 0003_budget_money_bounds
Revises: 0002_budget_limits_audit_scale
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0003_budget_money_bounds"
down_revision = "0002_budget_limits_audit_scale"
branch_labels = None
depends_on = None

MONEY_BOUND_MICROS = 1_000_000_000_000
MONEY_COLUMNS = {
    "budget_reservations": ("amount_micros", "committed_micros"),
    "budget_usage_records": ("cost_micros", "cost_saved_micros"),
    "budget_users": (
        "override_daily_micros",
        "override_monthly_micros",
        "override_per_generation_micros",
        "cap_daily_micros",
        "cap_monthly_micros",
        "cap_per_generation_micros",
    ),
    "budget_system_limits": ("daily_limit_micros", "monthly_limit_micros"),
}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, columns in MONEY_COLUMNS.items():
        if sqlite:
            _sqlite_triggers(table, columns)
            continue
        for column in columns:
            op.create_check_constraint(
                op.f(f"ck_{table}_{column}_bounded"), table, f"{column} <= {MONEY_BOUND_MICROS}"
            )


def _sqlite_triggers(table: str, columns: tuple[str, ...]) -> None:
    over = " OR ".join(f"NEW.{column} > {MONEY_BOUND_MICROS}" for column in columns)
    for event in ("INSERT", "UPDATE"):
        op.execute(
            f"CREATE TRIGGER {table}_money_bounded_{event.lower()} BEFORE {event} ON {table} "
            f"WHEN {over} BEGIN SELECT RAISE(ABORT, 'money above the bound in {table}'); END"
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, columns in MONEY_COLUMNS.items():
        if sqlite:
            for event in ("insert", "update"):
                op.execute(f"DROP TRIGGER {table}_money_bounded_{event}")
            continue
        for column in columns:
            op.drop_constraint(op.f(f"ck_{table}_{column}_bounded"), table, type_="check")
