"""budget: prompt rollups for AnalyzeCostOptimization's prompt efficiency

The generated images whose prompt the ledger knows (custom_prompt not NULL)
by model and by who wrote the prompt (custom 1: the caller, 0: the service),
with their input tokens and cost:

- budget_system_prompts: every user's, by UTC hour and UTC day ("kind"),
  striped over 16 shards (a record's id % 16) as migration 0009's rollups
  are, so a system range reads a few rows an hour and a day.
- budget_user_prompts: each user's by UTC day (kind "day"); a range's
  partial days read the user's index range of the ledger.

Triggers keep both in the statement that inserts a record (on PostgreSQL
one statement-level upsert a table over the rows the statement added) and
follow the one amendment the ledger allows: an abandoned record settled
(migration 0004). An abandoned record is never in these rollups, so the
amendment only adds the settled record when it qualifies. Existing records
are rolled up here.

Revision ID: 0013_budget_optimization_rollups
Revises: 0012_budget_webhook_deliveries
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_budget_optimization_rollups"
down_revision = "0012_budget_webhook_deliveries"
branch_labels = None
depends_on = None

SHARDS = 16
TRIGGERS = (
    "budget_usage_records_optimization_rollups",
    "budget_usage_records_optimization_rollups_amend",
)
MEASURES = ("generations", "input_tokens", "cost_micros")


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _times(r: str) -> dict[str, str]:
    """SQL of a record's UTC hour, day's first instant, day, and shard
    (as migration 0009 keys them)."""
    if _postgres():
        utc = f"({r}.created_at AT TIME ZONE 'UTC')"
        return {
            "hour": f"(date_trunc('hour', {utc}) AT TIME ZONE 'UTC')",
            "day_start": f"(date_trunc('day', {utc}) AT TIME ZONE 'UTC')",
            "day": f"({utc}::date)",
            "shard": f"(({r}.id % {SHARDS})::int)",
        }
    return {
        "hour": f"strftime('%Y-%m-%d %H:00:00.000000', {r}.created_at)",
        "day_start": f"strftime('%Y-%m-%d 00:00:00.000000', {r}.created_at)",
        "day": f"date({r}.created_at)",
        "shard": f"({r}.id % {SHARDS})",
    }


def _qualifies(r: str) -> str:
    return f"{r}.outcome = 'generated' AND {r}.custom_prompt IS NOT NULL"


def _rows(table: str, r: str, source: str) -> str:
    """The rollup rows of the qualifying records of source (a table aliased
    r, or "" for the row NEW itself)."""
    x = _times(r)
    custom = f"(CASE WHEN {r}.custom_prompt THEN 1 ELSE 0 END)"
    sums = f"count(*), sum({r}.input_tokens), sum({r}.cost_micros)"
    if table == "budget_system_prompts":
        start = f"CASE k.kind WHEN 'hour' THEN {x['hour']} ELSE {x['day_start']} END"
        kinds = "(SELECT 'hour' AS kind UNION ALL SELECT 'day') AS k"
        keys = f"k.kind, {start}, {x['shard']}, {r}.model, {custom}"
        positions = "1, 2, 3, 4, 5"
    else:
        kinds = "(SELECT 'day' AS kind) AS k"
        keys = f"k.kind, {x['day']}, {r}.user_id, {r}.model, {custom}"
        positions = "1, 2, 3, 4, 5"
    return (
        f"SELECT {keys}, {sums} FROM {source}{kinds} WHERE {_qualifies(r)} "
        f"GROUP BY {positions} ORDER BY {positions}"
    )


KEYS = {
    "budget_system_prompts": "kind, start, shard, model, custom",
    "budget_user_prompts": "kind, start, user_id, model, custom",
}


def _add(table: str, r: str, source: str) -> str:
    """Upsert the rows of _rows. (SQLite takes no table alias inside a
    trigger; PostgreSQL wants one.)"""
    target, t = (f"{table} AS t", "t.") if _postgres() else (table, "")
    updates = ", ".join(f"{name} = {t}{name} + excluded.{name}" for name in MEASURES)
    return (
        f"INSERT INTO {target} ({KEYS[table]}, {', '.join(MEASURES)}) {_rows(table, r, source)} "
        f"ON CONFLICT ({KEYS[table]}) DO UPDATE SET {updates};"
    )


def _run(sql: str) -> None:
    if _postgres():
        op.execute(sql)
    else:
        # Raw, so SQLite's strftime formats ("%H:00") are not taken for binds.
        op.get_bind().exec_driver_sql(sql)


def _measure_columns() -> list[sa.Column[int]]:
    return [
        sa.Column("generations", sa.Integer(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "budget_system_prompts",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("custom", sa.Integer(), nullable=False),
        *_measure_columns(),
        sa.PrimaryKeyConstraint(
            "kind", "start", "shard", "model", "custom", name="pk_budget_system_prompts"
        ),
    )
    op.create_table(
        "budget_user_prompts",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("custom", sa.Integer(), nullable=False),
        *_measure_columns(),
        sa.PrimaryKeyConstraint(
            "user_id", "kind", "start", "model", "custom", name="pk_budget_user_prompts"
        ),
    )
    _create_triggers()
    # Records written before this migration.
    for table in KEYS:
        _run(
            f"INSERT INTO {table} ({KEYS[table]}, {', '.join(MEASURES)}) "
            f"{_rows(table, 'r', 'budget_usage_records AS r, ')}"
        )


def _create_triggers() -> None:
    if _postgres():
        adds = "\n".join(_add(table, "r", "added AS r, ") for table in KEYS)
        _run(
            "CREATE FUNCTION budget_optimization_rollups_add() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$\nBEGIN\n{adds}\nRETURN NULL;\nEND\n$$"
        )
        _run(
            f"CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON budget_usage_records "
            "REFERENCING NEW TABLE AS added FOR EACH STATEMENT "
            "EXECUTE FUNCTION budget_optimization_rollups_add()"
        )
        amend = "\n".join(_add(table, "NEW", "") for table in KEYS)
        _run(
            "CREATE FUNCTION budget_optimization_rollups_amend() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$\nBEGIN\n{amend}\nRETURN NULL;\nEND\n$$"
        )
        _run(
            f"CREATE TRIGGER {TRIGGERS[1]} AFTER UPDATE ON budget_usage_records "
            f"FOR EACH ROW WHEN (OLD.outcome = 'abandoned' AND {_qualifies('NEW')}) "
            "EXECUTE FUNCTION budget_optimization_rollups_amend()"
        )
        return
    adds = "\n".join(_add(table, "NEW", "") for table in KEYS)
    _run(
        f"CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON budget_usage_records "
        f"WHEN {_qualifies('NEW')} BEGIN\n{adds}\nEND"
    )
    _run(
        f"CREATE TRIGGER {TRIGGERS[1]} AFTER UPDATE ON budget_usage_records "
        f"WHEN OLD.outcome = 'abandoned' AND {_qualifies('NEW')} BEGIN\n{adds}\nEND"
    )


def downgrade() -> None:
    on_table = " ON budget_usage_records" if _postgres() else ""
    for trigger in TRIGGERS:
        _run(f"DROP TRIGGER IF EXISTS {trigger}{on_table}")
    if _postgres():
        _run("DROP FUNCTION IF EXISTS budget_optimization_rollups_add()")
        _run("DROP FUNCTION IF EXISTS budget_optimization_rollups_amend()")
    op.drop_table("budget_user_prompts")
    op.drop_table("budget_system_prompts")
