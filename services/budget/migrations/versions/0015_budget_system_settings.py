"""budget: the system spend rollup counts what cost optimization reads

budget_system_spend (migration 0009: every user's ledger by UTC hour, day
and month, shard, model, size and quality) gains four measures, so that
AnalyzeCostOptimization's system summary and setting groups read it (a few
rows an hour and a day) instead of every user's daily rollup:

- successful: records with success set; cached: records with cached set
  (GetUsageStats' cache hits);
- generated, generated_cost_micros: the records of outcome "generated" and
  their cost (the images a setting suggestion prices again).

No new key and no new trigger: migration 0009's trigger functions are
replaced by the same upserts with four more sums, and the existing rows are
rolled up again from the ledger.

Revision ID: 0015_budget_system_settings
Revises: 0014_budget_usage_kind
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0015_budget_system_settings"
down_revision = "0014_budget_usage_kind"
branch_labels = None
depends_on = None

SPEND = "budget_system_spend"
COLUMNS = {
    "successful": sa.Integer(),
    "cached": sa.Integer(),
    "generated": sa.Integer(),
    "generated_cost_micros": sa.BigInteger(),
}


def _rollups_0009() -> ModuleType:
    """Migration 0009's rollup definitions and SQL builders (one source of
    the trigger bodies, so the two revisions cannot drift apart)."""
    return importlib.import_module("services.budget.migrations.versions.0009_budget_system_rollups")


def _rollups(base: ModuleType, r: str, *, extended: bool) -> tuple[Any, ...]:
    rollups = base._rollups(r)
    if not extended:
        return tuple(rollups)
    flag = f"(CASE WHEN {r}.%s THEN 1 ELSE 0 END)"
    generated = f"{r}.outcome = 'generated'"
    more = (
        ("successful", flag % "success"),
        ("cached", flag % "cached"),
        ("generated", f"(CASE WHEN {generated} THEN 1 ELSE 0 END)"),
        ("generated_cost_micros", f"(CASE WHEN {generated} THEN {r}.cost_micros ELSE 0 END)"),
    )
    return tuple(
        rollup._replace(measures=(*rollup.measures, *more)) if rollup.table == SPEND else rollup
        for rollup in rollups
    )


def _replace_triggers(*, extended: bool) -> None:
    """Migration 0009's two triggers with the spend rollup's measures as
    extended says (PostgreSQL: the same triggers, their functions replaced)."""
    base = _rollups_0009()
    added = "added AS r, "
    inserted_new = _rollups(base, "r" if base._postgres() else "NEW", extended=extended)
    amend = "\n".join(
        base._subtract(old) + "\n" + base._add(new, "")
        for old, new in zip(
            _rollups(base, "OLD", extended=extended),
            _rollups(base, "NEW", extended=extended),
            strict=True,
        )
    )
    if base._postgres():
        adds = "\n".join(base._add(rollup, added) for rollup in inserted_new)
        base._run(
            "CREATE OR REPLACE FUNCTION budget_system_rollups_add() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$\nBEGIN\n{adds}\nRETURN NULL;\nEND\n$$"
        )
        base._run(
            "CREATE OR REPLACE FUNCTION budget_system_rollups_amend() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$\nBEGIN\n{amend}\nRETURN NULL;\nEND\n$$"
        )
        return
    insert, update = base.TRIGGERS
    for trigger in base.TRIGGERS:
        base._run(f"DROP TRIGGER IF EXISTS {trigger}")
    adds = "\n".join(base._add(rollup, "") for rollup in inserted_new)
    base._run(f"CREATE TRIGGER {insert} AFTER INSERT ON budget_usage_records BEGIN\n{adds}\nEND")
    base._run(f"CREATE TRIGGER {update} AFTER UPDATE ON budget_usage_records BEGIN\n{amend}\nEND")


def _roll_up_again(*, extended: bool) -> None:
    """The spend rollup's rows again from the ledger, with its measures."""
    base = _rollups_0009()
    (spend,) = (r for r in _rollups(base, "r", extended=extended) if r.table == SPEND)
    base._run(f"DELETE FROM {SPEND}")
    base._run(
        f"INSERT INTO {SPEND} ({spend.columns()}) "
        f"{base._select(spend, 'budget_usage_records AS r, ')}"
    )


def upgrade() -> None:
    for name, kind in COLUMNS.items():
        op.add_column(SPEND, sa.Column(name, kind, nullable=False, server_default="0"))
    _replace_triggers(extended=True)
    _roll_up_again(extended=True)


def downgrade() -> None:
    _replace_triggers(extended=False)
    # In place (SQLite 3.35 drops a column without copying the table, which
    # the ledger's triggers name).
    for name in reversed(COLUMNS):
        op.drop_column(SPEND, name)
