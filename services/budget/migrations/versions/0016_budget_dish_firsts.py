"""budget: each dish's first successful generation at each quality

AnalyzeCostOptimization's "dish seen before" asks, for a generation with
allow_similar off, whether any user's earlier record generated its dish
successfully at the same quality or better. Answered from the ledger, that
read every earlier record of the dish (every user's); answered from
budget_dish_first_generations (dish_key, quality) -> first_at, the instant
of the earliest such record, it is one index lookup of a few rows:

    seen before  <=>  some row of the dish with rank(quality) >= the
                      record's rank has first_at < the record's created_at

Kept by a trigger in the inserting statement, with the earliest instant
winning (LEAST / min), so a record that arrives late with an earlier
created_at still moves first_at back. It follows the one amendment the
ledger allows (an abandoned record settled, migration 0004), which only
adds a record. The common case (the dish already known, first_at earlier)
writes and locks nothing: an insert that does nothing on conflict, then an
update only of the rows the statement makes earlier. At READ COMMITTED
(the ledger's writes) the update sees a pair a concurrent statement
inserted and committed while the insert waited on it, and a row lock
rechecks "earlier" on its latest version; at REPEATABLE READ PostgreSQL
refuses the insert with a serialization failure rather than miss it.
Existing records are rolled up here.

Revision ID: 0016_budget_dish_firsts
Revises: 0015_budget_system_settings
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_budget_dish_firsts"
down_revision = "0015_budget_system_settings"
branch_labels = None
depends_on = None

TABLE = "budget_dish_first_generations"
TRIGGERS = (
    "budget_usage_records_dish_first_generations",
    "budget_usage_records_dish_first_generations_amend",
)
FUNCTIONS = ("budget_dish_first_generations_add", "budget_dish_first_generations_amend")


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _qualifies(r: str) -> str:
    return f"{r}.outcome = 'generated' AND {r}.success AND {r}.dish_key IS NOT NULL"


def _firsts(r: str, source: str) -> str:
    """The earliest qualifying record of each (dish, quality) of source."""
    return (
        f"SELECT {r}.dish_key, {r}.quality, min({r}.created_at) AS first_at "
        f"FROM {source} AS {r} WHERE {_qualifies(r)} GROUP BY 1, 2"
    )


def _postgres_body(source: str) -> str:
    """Insert new (dish, quality) pairs, then move first_at back where the
    statement's records are earlier: no row is locked otherwise."""
    firsts = _firsts("r", source)
    return (
        f"INSERT INTO {TABLE} (dish_key, quality, first_at) {firsts} ORDER BY 1, 2 "
        "ON CONFLICT (dish_key, quality) DO NOTHING;\n"
        f"UPDATE {TABLE} AS t SET first_at = a.first_at FROM ({firsts}) AS a "
        "WHERE t.dish_key = a.dish_key AND t.quality = a.quality AND a.first_at < t.first_at;"
    )


def _row_body() -> str:
    """_postgres_body of the row NEW alone (the amendment)."""
    key = "dish_key = NEW.dish_key AND quality = NEW.quality"
    return (
        f"INSERT INTO {TABLE} (dish_key, quality, first_at) "
        "VALUES (NEW.dish_key, NEW.quality, NEW.created_at) "
        "ON CONFLICT (dish_key, quality) DO NOTHING;\n"
        f"UPDATE {TABLE} SET first_at = NEW.created_at WHERE {key} AND NEW.created_at < first_at;"
    )


def _sqlite_body() -> str:
    return (
        f"INSERT INTO {TABLE} (dish_key, quality, first_at) "
        "VALUES (NEW.dish_key, NEW.quality, NEW.created_at) "
        "ON CONFLICT (dish_key, quality) DO UPDATE SET first_at = excluded.first_at "
        "WHERE excluded.first_at < first_at;"
    )


def _run(sql: str) -> None:
    if _postgres():
        op.execute(sql)
    else:
        op.get_bind().exec_driver_sql(sql)


def _create_triggers() -> None:
    amended = f"OLD.outcome = 'abandoned' AND {_qualifies('NEW')}"
    if _postgres():
        _run(
            f"CREATE FUNCTION {FUNCTIONS[0]}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n{_postgres_body('added')}\nRETURN NULL;\nEND\n$$"
        )
        _run(
            f"CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON budget_usage_records "
            "REFERENCING NEW TABLE AS added FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {FUNCTIONS[0]}()"
        )
        _run(
            f"CREATE FUNCTION {FUNCTIONS[1]}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN\n{_row_body()}\nRETURN NULL;\nEND\n$$"
        )
        _run(
            f"CREATE TRIGGER {TRIGGERS[1]} AFTER UPDATE ON budget_usage_records "
            f"FOR EACH ROW WHEN ({amended}) EXECUTE FUNCTION {FUNCTIONS[1]}()"
        )
        return
    _run(
        f"CREATE TRIGGER {TRIGGERS[0]} AFTER INSERT ON budget_usage_records "
        f"WHEN {_qualifies('NEW')} BEGIN\n{_sqlite_body()}\nEND"
    )
    _run(
        f"CREATE TRIGGER {TRIGGERS[1]} AFTER UPDATE ON budget_usage_records "
        f"WHEN {amended} BEGIN\n{_sqlite_body()}\nEND"
    )


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("dish_key", sa.String(64), nullable=False),
        sa.Column("quality", sa.String(16), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dish_key", "quality", name=f"pk_{TABLE}"),
    )
    _create_triggers()
    # Records written before this migration.
    _run(
        f"INSERT INTO {TABLE} (dish_key, quality, first_at) {_firsts('r', 'budget_usage_records')}"
    )


def downgrade() -> None:
    on_table = " ON budget_usage_records" if _postgres() else ""
    for trigger in TRIGGERS:
        _run(f"DROP TRIGGER IF EXISTS {trigger}{on_table}")
    if _postgres():
        for function in FUNCTIONS:
            _run(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_table(TABLE)
