"""budget: system rollups of the ledger for GetSystemMetrics and ListTopUsers

- budget_system_spend and budget_system_outcomes: the ledger by UTC hour, UTC
  day and UTC month ("kind"), the one by model, size and quality, the other by
  outcome and error reason (two narrow rollups, not their product: a range
  reads a few rows a shard), striped over 16 shards (a record's id % 16), so
  concurrent records of every user never update one hot row; readers sum
  the shards.
- budget_system_totals: cost and attempts by UTC hour and day and shard (the
  trend, without the other kinds).
- budget_user_totals: each user's cost and attempts by UTC day and month,
  indexed by period and cost (and attempts): the top users are the last
  entries of an index range, read backwards.
- The partial hours at a range's edges read the ledger's created_at index
  (migration 0008).

Triggers keep all three in the statement that inserts a record (on PostgreSQL
one statement-level upsert a table, over the rows the statement added) and
follow the one amendment the ledger allows (an abandoned record settled, as
migration 0004's rollup does). Existing records are rolled up here.

An error reason is the UPPER_SNAKE word before the first ":" of a record's
error_message (ImageService writes "<REASON>: <message>"), at most 64
characters; "" otherwise (services.budget.domain.system_metrics.error_reason).

Revision ID: 0009_budget_system_rollups
Revises: 0008_budget_window_limits
Create Date: 2026-12-14
"""

from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa
from alembic import op

revision = "0009_budget_system_rollups"
down_revision = "0008_budget_window_limits"
branch_labels = None
depends_on = None

Instant = sa.DateTime(timezone=True)
SHARDS = 16
TRIGGERS = ("budget_usage_records_system_rollups", "budget_usage_records_system_rollups_amend")


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


# -- the rollups' keys and measures, as SQL over a record r


def _expressions(r: str) -> dict[str, str]:
    """SQL of a record's derived values, in this database's dialect."""
    if _postgres():
        utc = f"({r}.created_at AT TIME ZONE 'UTC')"
        return {
            "hour": f"(date_trunc('hour', {utc}) AT TIME ZONE 'UTC')",
            "day_start": f"(date_trunc('day', {utc}) AT TIME ZONE 'UTC')",
            "month_start": f"(date_trunc('month', {utc}) AT TIME ZONE 'UTC')",
            "day": f"({utc}::date)",
            "month": f"(date_trunc('month', {utc})::date)",
            "shard": f"(({r}.id % {SHARDS})::int)",
            "successful": f"(CASE WHEN {r}.success THEN 1 ELSE 0 END)",
            "reason": (
                f"(CASE WHEN {r}.error_message ~ '^[A-Z][A-Z0-9_]{{0,63}}:' "
                f"THEN split_part({r}.error_message, ':', 1) ELSE '' END)"
            ),
        }
    colon = f"instr({r}.error_message, ':')"
    word = f"substr({r}.error_message, 1, {colon} - 1)"
    return {
        "hour": f"strftime('%Y-%m-%d %H:00:00.000000', {r}.created_at)",
        "day_start": f"strftime('%Y-%m-%d 00:00:00.000000', {r}.created_at)",
        "month_start": f"strftime('%Y-%m-01 00:00:00.000000', {r}.created_at)",
        "day": f"date({r}.created_at)",
        "month": f"strftime('%Y-%m-01', {r}.created_at)",
        "shard": f"({r}.id % {SHARDS})",
        "successful": f"(CASE WHEN {r}.success THEN 1 ELSE 0 END)",
        "reason": (
            f"(CASE WHEN {colon} BETWEEN 2 AND 65 AND {word} GLOB '[A-Z]*' "
            f"AND {word} NOT GLOB '*[^A-Z0-9_]*' THEN {word} ELSE '' END)"
        ),
    }


class Rollup(NamedTuple):
    table: str
    kinds: tuple[str, ...]
    # (column, SQL over r and k.kind) of the key, then of the measures added.
    keys: tuple[tuple[str, str], ...]
    measures: tuple[tuple[str, str], ...]

    def key_columns(self) -> str:
        return ", ".join(name for name, _ in self.keys)

    def columns(self) -> str:
        return ", ".join(name for name, _ in (*self.keys, *self.measures))


def _rollups(r: str) -> tuple[Rollup, ...]:
    x = _expressions(r)
    money = (("generations", "1"), ("cost_micros", f"{r}.cost_micros"))
    hour_day = (
        "CASE k.kind WHEN 'hour' THEN {hour} WHEN 'day' THEN {day_start} ELSE {month_start} END"
    ).format(**x)
    time = (("kind", "k.kind"), ("start", hour_day), ("shard", x["shard"]))
    return (
        Rollup(
            "budget_system_spend",
            ("hour", "day", "month"),
            (*time, ("model", f"{r}.model"), ("size", f"{r}.size"), ("quality", f"{r}.quality")),
            (*money, ("cost_saved_micros", f"{r}.cost_saved_micros")),
        ),
        Rollup(
            "budget_system_outcomes",
            ("hour", "day", "month"),
            (*time, ("outcome", f"{r}.outcome"), ("reason", x["reason"])),
            (
                *money,
                ("successful", x["successful"]),
                ("exact_hits", f"(CASE WHEN {r}.cache_hit = 'exact' THEN 1 ELSE 0 END)"),
                ("similar_hits", f"(CASE WHEN {r}.cache_hit = 'similar' THEN 1 ELSE 0 END)"),
                ("cost_saved_micros", f"{r}.cost_saved_micros"),
            ),
        ),
        Rollup("budget_system_totals", ("hour", "day"), time, money),
        Rollup(
            "budget_user_totals",
            ("day", "month"),
            (
                ("kind", "k.kind"),
                ("start", f"CASE k.kind WHEN 'day' THEN {x['day']} ELSE {x['month']} END"),
                ("user_id", f"{r}.user_id"),
            ),
            money,
        ),
    )


def _kinds(rollup: Rollup) -> str:
    first, *others = rollup.kinds
    rest = "".join(f" UNION ALL SELECT '{kind}'" for kind in others)
    return f"(SELECT '{first}' AS kind{rest}) AS k"


def _select(rollup: Rollup, source: str) -> str:
    """The rollup rows of the records of source (a table aliased r, or "" for
    the row NEW or OLD itself), once per kind."""
    positions = ", ".join(str(i) for i in range(1, len(rollup.keys) + 1))
    sums = ", ".join(f"sum({sql})" for _, sql in rollup.measures)
    keys = ", ".join(sql for _, sql in rollup.keys)
    return (
        f"SELECT {keys}, {sums} FROM {source}{_kinds(rollup)} WHERE true "
        f"GROUP BY {positions} ORDER BY {positions}"
    )


def _add(rollup: Rollup, source: str) -> str:
    """Upsert the rows of _select into the rollup. (SQLite takes no table
    alias inside a trigger; PostgreSQL wants one.)"""
    target, t = (f"{rollup.table} AS t", "t.") if _postgres() else (rollup.table, "")
    updates = ", ".join(f"{name} = {t}{name} + excluded.{name}" for name, _ in rollup.measures)
    return (
        f"INSERT INTO {target} ({rollup.columns()}) {_select(rollup, source)} "
        f"ON CONFLICT ({rollup.key_columns()}) DO UPDATE SET {updates};"
    )


def _subtract(rollup: Rollup) -> str:
    """Take the row OLD out of the rollup (each kind); drop rows left empty."""
    statements = []
    for kind in rollup.kinds:
        where = " AND ".join(
            f"{name} = " + ("'" + kind + "'" if name == "kind" else _kind_sql(sql, kind))
            for name, sql in rollup.keys
        )
        minus = ", ".join(f"{name} = {name} - {sql}" for name, sql in rollup.measures)
        statements.append(f"UPDATE {rollup.table} SET {minus} WHERE {where};")
        statements.append(f"DELETE FROM {rollup.table} WHERE {where} AND generations = 0;")
    return "\n".join(statements)


def _kind_sql(sql: str, kind: str) -> str:
    """A key's SQL with k.kind replaced by the literal kind."""
    return sql.replace("k.kind", f"'{kind}'")


def _run(sql: str) -> None:
    if _postgres():
        op.execute(sql)
    else:
        # Raw, so SQLite's strftime formats ("%H:00") are not taken for binds.
        op.get_bind().exec_driver_sql(sql)


# -- upgrade and downgrade


def _time_columns() -> list[sa.Column[object]]:
    """A system rollup row's hour or day, and its shard."""
    return [
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("start", Instant, nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
    ]


def _measure_columns(*names: str) -> list[sa.Column[int]]:
    return [
        sa.Column(
            name, sa.BigInteger() if name.endswith("_micros") else sa.Integer(), nullable=False
        )
        for name in names
    ]


def upgrade() -> None:
    op.create_table(
        "budget_system_spend",
        *_time_columns(),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("size", sa.String(32), nullable=False),
        sa.Column("quality", sa.String(16), nullable=False),
        *_measure_columns("generations", "cost_micros", "cost_saved_micros"),
        sa.PrimaryKeyConstraint(
            "kind", "start", "shard", "model", "size", "quality", name="pk_budget_system_spend"
        ),
    )
    op.create_table(
        "budget_system_outcomes",
        *_time_columns(),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        *_measure_columns(
            "generations",
            "cost_micros",
            "successful",
            "exact_hits",
            "similar_hits",
            "cost_saved_micros",
        ),
        sa.PrimaryKeyConstraint(
            "kind", "start", "shard", "outcome", "reason", name="pk_budget_system_outcomes"
        ),
    )
    op.create_table(
        "budget_system_totals",
        *_time_columns(),
        *_measure_columns("generations", "cost_micros"),
        sa.PrimaryKeyConstraint("kind", "start", "shard", name="pk_budget_system_totals"),
    )
    op.create_table(
        "budget_user_totals",
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        *_measure_columns("generations", "cost_micros"),
        sa.PrimaryKeyConstraint("kind", "start", "user_id", name="pk_budget_user_totals"),
    )
    for measure in ("cost_micros", "generations"):
        op.create_index(
            f"ix_budget_user_totals_kind_start_{measure}",
            "budget_user_totals",
            ["kind", "start", measure, "user_id"],
        )
    _create_triggers()
    # Records written before this migration.
    for rollup in _rollups("r"):
        _run(
            f"INSERT INTO {rollup.table} ({rollup.columns()}) "
            f"{_select(rollup, 'budget_usage_records AS r, ')}"
        )


def _create_triggers() -> None:
    if _postgres():
        adds = "\n".join(_add(rollup, "added AS r, ") for rollup in _rollups("r"))
        _run(
            "CREATE FUNCTION budget_system_rollups_add() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n{adds}\nRETURN NULL;\nEND\n$$"
        )
        _run(
            f"CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON budget_usage_records "
            "REFERENCING NEW TABLE AS added FOR EACH STATEMENT "
            "EXECUTE FUNCTION budget_system_rollups_add()"
        )
        amend = "\n".join(
            _subtract(old) + "\n" + _add(new, "")
            for old, new in zip(_rollups("OLD"), _rollups("NEW"), strict=True)
        )
        _run(
            "CREATE FUNCTION budget_system_rollups_amend() RETURNS trigger "
            f"LANGUAGE plpgsql AS $$\nBEGIN\n{amend}\nRETURN NULL;\nEND\n$$"
        )
        _run(
            f"CREATE TRIGGER {TRIGGERS[1]} AFTER UPDATE ON budget_usage_records "
            "FOR EACH ROW EXECUTE FUNCTION budget_system_rollups_amend()"
        )
        return
    adds = "\n".join(_add(rollup, "") for rollup in _rollups("NEW"))
    _run(f"CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON budget_usage_records BEGIN\n{adds}\nEND")
    amend = "\n".join(
        _subtract(old) + "\n" + _add(new, "")
        for old, new in zip(_rollups("OLD"), _rollups("NEW"), strict=True)
    )
    _run(f"CREATE TRIGGER {TRIGGERS[1]} AFTER UPDATE ON budget_usage_records BEGIN\n{amend}\nEND")


def downgrade() -> None:
    on_table = " ON budget_usage_records" if _postgres() else ""
    for trigger in TRIGGERS:
        _run(f"DROP TRIGGER IF EXISTS {trigger}{on_table}")
    if _postgres():
        _run("DROP FUNCTION IF EXISTS budget_system_rollups_add()")
        _run("DROP FUNCTION IF EXISTS budget_system_rollups_amend()")
    op.drop_table("budget_user_totals")
    op.drop_table("budget_system_totals")
    op.drop_table("budget_system_outcomes")
    op.drop_table("budget_system_spend")
