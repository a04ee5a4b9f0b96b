"""budget: request ids and idempotency keys scoped to their user; abandoned
attempts in the ledger, amended once by a late settlement

- A reservation's idempotency key and a usage record's request id are unique
  per user, not across users: one user can no longer claim another's id.
- Outcome 'abandoned': the reaper records an attempt whose reservation expired
  unsettled. The ledger stays append-only but for one amendment: an abandoned
  record may become the settled one (a late commit or release), keeping its
  id, request id, user and reservation, so the attempt still has exactly one
  record. The daily rollup follows the amendment.

SQLite changes a constraint only by copying the table; the copy would drop the
table's triggers, so they are read from sqlite_master first and recreated.

Revision ID: 0004_budget_user_scoped_keys
Revises: 0003_budget_money_bounds
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

from services.common.db import NAMING_CONVENTION

revision = "0004_budget_user_scoped_keys"
down_revision = "0003_budget_money_bounds"
branch_labels = None
depends_on = None

OUTCOMES = ("generated", "cache_hit_exact", "cache_hit_similar", "failed", "fallback", "refused")
NEW_OUTCOMES = (*OUTCOMES, "abandoned")
# (table, the column unique until now, the columns unique from now on)
SCOPED = (
    ("budget_reservations", "idempotency_key", ("user_id", "idempotency_key")),
    ("budget_usage_records", "request_id", ("user_id", "request_id")),
)
# What an amendment may not change: the attempt it records.
AMENDABLE = (
    "OLD.outcome = 'abandoned' AND NEW.outcome <> 'abandoned' AND NEW.id = OLD.id "
    "AND NEW.request_id = OLD.request_id AND NEW.user_id = OLD.user_id "
    "AND NEW.reservation_id IS OLD.reservation_id"
)
ROLLUP_KEY = "user_id, day, model, size, quality, outcome"


def _outcome_check(outcomes: tuple[str, ...]) -> str:
    return "outcome IN (" + ", ".join(f"'{o}'" for o in outcomes) + ")"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgres_upgrade()
    else:
        _sqlite_upgrade()


# -- PostgreSQL


def _postgres_upgrade() -> None:
    for table, column, columns in SCOPED:
        op.drop_constraint(f"uq_{table}_{column}", table, type_="unique")
        op.create_unique_constraint(op.f(f"uq_{table}_{'_'.join(columns)}"), table, list(columns))
    op.drop_constraint("ck_budget_usage_records_outcome", "budget_usage_records", type_="check")
    op.create_check_constraint(
        op.f("ck_budget_usage_records_outcome"),
        "budget_usage_records",
        _outcome_check(NEW_OUTCOMES),
    )
    amendable = AMENDABLE.replace("IS OLD", "IS NOT DISTINCT FROM OLD")
    op.execute(
        f"""
        CREATE FUNCTION budget_usage_amend_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND {amendable} THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'budget_usage_records is append-only'
                USING ERRCODE = 'restrict_violation';
        END
        $$
        """
    )
    op.execute("DROP TRIGGER budget_usage_records_append_only ON budget_usage_records")
    op.execute(
        "CREATE TRIGGER budget_usage_records_append_only BEFORE UPDATE OR DELETE "
        "ON budget_usage_records FOR EACH ROW EXECUTE FUNCTION budget_usage_amend_only()"
    )
    day = "(({row}.created_at AT TIME ZONE 'UTC')::date)"
    op.execute(
        f"""
        CREATE FUNCTION budget_usage_daily_amend() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            {_rollup_subtract(day.format(row="OLD"), "CASE WHEN OLD.{} THEN 1 ELSE 0 END")}
            {_rollup_add(day.format(row="NEW"), "CASE WHEN NEW.{} THEN 1 ELSE 0 END", "GREATEST")}
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER budget_usage_records_rollup_amend AFTER UPDATE ON budget_usage_records "
        "FOR EACH ROW EXECUTE FUNCTION budget_usage_daily_amend()"
    )


# -- SQLite


@contextmanager
def _sqlite_copy(table: str) -> Iterator[BatchOperations]:
    """alembic's batch mode (a copy of the table), keeping the table's triggers,
    which the copy would drop; the amendable UPDATE guard is set by the caller."""
    triggers = (
        op.get_bind()
        .execute(
            sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
            {"t": table},
        )
        .all()
    )
    with op.batch_alter_table(
        table, recreate="always", naming_convention=NAMING_CONVENTION
    ) as batch:
        yield batch
    for name, sql in triggers:
        if name != "budget_usage_records_append_only_update":
            op.execute(sql)


def _sqlite_upgrade() -> None:
    for table, column, columns in SCOPED:
        with _sqlite_copy(table) as batch:
            batch.drop_constraint(f"uq_{table}_{column}", type_="unique")
            batch.create_unique_constraint(op.f(f"uq_{table}_{'_'.join(columns)}"), list(columns))
            if table == "budget_usage_records":
                batch.drop_constraint("ck_budget_usage_records_outcome", type_="check")
                batch.create_check_constraint(
                    op.f("ck_budget_usage_records_outcome"), _outcome_check(NEW_OUTCOMES)
                )
    op.execute("DROP TRIGGER IF EXISTS budget_usage_records_append_only_update")
    op.execute(
        "CREATE TRIGGER budget_usage_records_append_only_update BEFORE UPDATE "
        f"ON budget_usage_records WHEN NOT ({AMENDABLE}) "
        "BEGIN SELECT RAISE(ABORT, 'budget_usage_records is append-only'); END"
    )
    op.execute(
        f"""
        CREATE TRIGGER budget_usage_records_rollup_amend AFTER UPDATE ON budget_usage_records
        BEGIN
            {_rollup_subtract("date(OLD.created_at)", "OLD.{}")}
            {_rollup_add("date(NEW.created_at)", "NEW.{}", "max")}
        END
        """
    )


# -- the rollup's side of an amendment


def _rollup_where(day: str, row: str) -> str:
    return (
        f"user_id = {row}.user_id AND day = {day} AND model = {row}.model "
        f"AND size = {row}.size AND quality = {row}.quality AND outcome = {row}.outcome"
    )


def _rollup_subtract(day: str, flag: str) -> str:
    """Take the old record out of its rollup row; drop the row when it is empty."""
    where = _rollup_where(day, "OLD")
    return f"""
            UPDATE budget_usage_daily SET
                generations = generations - 1,
                cost_micros = cost_micros - OLD.cost_micros,
                successful = successful - {flag.format("success")},
                cache_hits = cache_hits - {flag.format("cached")},
                cost_saved_micros = cost_saved_micros - OLD.cost_saved_micros
            WHERE {where};
            DELETE FROM budget_usage_daily WHERE {where} AND generations = 0;"""


def _rollup_add(day: str, flag: str, greatest: str) -> str:
    """Add the amended record to its rollup row, as the insert trigger does.
    (SQLite takes no table alias inside a trigger; PostgreSQL wants one.)"""
    postgres = greatest == "GREATEST"
    target, d = ("budget_usage_daily AS d", "d.") if postgres else ("budget_usage_daily", "")
    return f"""
            INSERT INTO {target} ({ROLLUP_KEY}, generations, cost_micros,
                successful, cache_hits, cost_saved_micros, last_at)
            VALUES (NEW.user_id, {day}, NEW.model, NEW.size, NEW.quality, NEW.outcome, 1,
                NEW.cost_micros, {flag.format("success")}, {flag.format("cached")},
                NEW.cost_saved_micros, NEW.created_at)
            ON CONFLICT ({ROLLUP_KEY}) DO UPDATE SET
                generations = {d}generations + 1,
                cost_micros = {d}cost_micros + excluded.cost_micros,
                successful = {d}successful + excluded.successful,
                cache_hits = {d}cache_hits + excluded.cache_hits,
                cost_saved_micros = {d}cost_saved_micros + excluded.cost_saved_micros,
                last_at = {greatest}({d}last_at, excluded.last_at);"""


def downgrade() -> None:
    """Back to 0003: only while no abandoned record exists (0003 has no such outcome)."""
    postgres = op.get_bind().dialect.name == "postgresql"
    on_table = " ON budget_usage_records" if postgres else ""
    op.execute(f"DROP TRIGGER budget_usage_records_rollup_amend{on_table}")
    if postgres:
        op.execute("DROP FUNCTION budget_usage_daily_amend()")
        op.execute("DROP TRIGGER budget_usage_records_append_only ON budget_usage_records")
        op.execute(
            "CREATE TRIGGER budget_usage_records_append_only BEFORE UPDATE OR DELETE "
            "ON budget_usage_records FOR EACH ROW EXECUTE FUNCTION budget_refuse_change()"
        )
        op.execute("DROP FUNCTION budget_usage_amend_only()")
        op.drop_constraint(op.f("ck_budget_usage_records_outcome"), "budget_usage_records", "check")
        # The name 0001 gave it (the naming convention doubled its prefix).
        op.create_check_constraint(
            "ck_budget_usage_records_outcome", "budget_usage_records", _outcome_check(OUTCOMES)
        )
        for table, column, columns in SCOPED:
            op.drop_constraint(op.f(f"uq_{table}_{'_'.join(columns)}"), table, type_="unique")
            op.create_unique_constraint(op.f(f"uq_{table}_{column}"), table, [column])
        return
    for table, column, columns in SCOPED:
        with _sqlite_copy(table) as batch:
            batch.drop_constraint(op.f(f"uq_{table}_{'_'.join(columns)}"), type_="unique")
            batch.create_unique_constraint(op.f(f"uq_{table}_{column}"), [column])
            if table == "budget_usage_records":
                batch.drop_constraint(op.f("ck_budget_usage_records_outcome"), type_="check")
                batch.create_check_constraint(
                    "ck_budget_usage_records_outcome", _outcome_check(OUTCOMES)
                )
    op.execute("DROP TRIGGER IF EXISTS budget_usage_records_append_only_update")
    op.execute(
        "CREATE TRIGGER budget_usage_records_append_only_update BEFORE UPDATE "
        "ON budget_usage_records "
        "BEGIN SELECT RAISE(ABORT, 'budget_usage_records is append-only'); END"
    )
