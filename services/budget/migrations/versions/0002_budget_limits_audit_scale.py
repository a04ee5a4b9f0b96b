"""budget: overrides and caps, stored system limits, overrun counters, the
audit log, append-only triggers, the covering index of usage stats and the
trigger-maintained daily rollup of the ledger

Revision ID: 0002_budget_limits_audit_scale
Revises: 0001_budget_initial
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.common.db import NAMING_CONVENTION

revision = "0002_budget_limits_audit_scale"
down_revision = "0001_budget_initial"
branch_labels = None
depends_on = None

Instant = sa.DateTime(timezone=True)
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

USER_LIMIT_COLUMNS = (
    "override_daily_micros",
    "override_monthly_micros",
    "override_per_generation_micros",
    "cap_daily_micros",
    "cap_monthly_micros",
    "cap_per_generation_micros",
)
STATS_COLUMNS = (
    "cost_micros",
    "cost_saved_micros",
    "success",
    "cached",
    "outcome",
    "model",
    "size",
    "quality",
)
APPEND_ONLY = ("budget_usage_records", "budget_audit_log")


def upgrade() -> None:
    # A user row may now hold overrides or caps without a tier of its own.
    # SQLite copies a table to change it; the naming convention keeps the
    # names it reflects as they are.
    with op.batch_alter_table("budget_users", naming_convention=NAMING_CONVENTION) as batch:
        batch.alter_column("tier", existing_type=sa.String(16), nullable=True)
        for column in USER_LIMIT_COLUMNS:
            batch.add_column(sa.Column(column, sa.BigInteger(), nullable=True))
            batch.create_check_constraint(
                op.f(f"ck_budget_users_{column}_not_negative"), f"{column} >= 0"
            )

    op.create_table(
        "budget_system_limits",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("daily_limit_micros", sa.BigInteger(), nullable=True),
        sa.Column("monthly_limit_micros", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", Instant, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_budget_system_limits"),
        sa.CheckConstraint("id = 1", name=op.f("ck_budget_system_limits_one_row")),
        sa.CheckConstraint(
            "daily_limit_micros >= 0", name=op.f("ck_budget_system_limits_daily_not_negative")
        ),
        sa.CheckConstraint(
            "monthly_limit_micros >= 0", name=op.f("ck_budget_system_limits_monthly_not_negative")
        ),
    )
    op.execute("INSERT INTO budget_system_limits (id) VALUES (1)")

    with op.batch_alter_table("budget_windows", naming_convention=NAMING_CONVENTION) as batch:
        batch.add_column(
            sa.Column(
                "overrun_micros", sa.BigInteger(), server_default=sa.text("0"), nullable=False
            )
        )
        batch.create_check_constraint(
            op.f("ck_budget_windows_overrun_not_negative"), "overrun_micros >= 0"
        )

    op.create_table(
        "budget_audit_log",
        sa.Column("id", AutoId, autoincrement=True, nullable=False),
        sa.Column("created_at", Instant, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target_user_id", sa.String(200), nullable=False),
        sa.Column("before_json", sa.Text(), nullable=False),
        sa.Column("after_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_budget_audit_log"),
        sa.CheckConstraint(
            "action IN ('set_user_tier', 'set_user_limits', 'set_spend_cap', 'set_system_limits')",
            name=op.f("ck_budget_audit_log_action"),
        ),
    )
    op.create_index(
        "ix_budget_audit_log_target_user_id_id", "budget_audit_log", ["target_user_id", "id"]
    )

    # Stats and ListUsage: one user's records in a time range, newest first.
    # On PostgreSQL the index carries the aggregated columns (index-only scans).
    op.drop_index("ix_budget_usage_records_user_id_created_at", "budget_usage_records")
    op.create_index(
        "ix_budget_usage_records_user_id_created_at_id",
        "budget_usage_records",
        ["user_id", "created_at", "id"],
        postgresql_include=list(STATS_COLUMNS),
    )

    op.create_table(
        "budget_usage_daily",
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("size", sa.String(32), nullable=False),
        sa.Column("quality", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("generations", sa.Integer(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("successful", sa.Integer(), nullable=False),
        sa.Column("cache_hits", sa.Integer(), nullable=False),
        sa.Column("cost_saved_micros", sa.BigInteger(), nullable=False),
        sa.Column("last_at", Instant, nullable=False),
        sa.PrimaryKeyConstraint(
            "user_id", "day", "model", "size", "quality", "outcome", name="pk_budget_usage_daily"
        ),
    )
    _create_rollup_trigger()
    # Records written before this migration.
    op.execute(f"INSERT INTO budget_usage_daily ({ROLLUP_COLUMNS}) {_rollup_select()}")

    _create_append_only_triggers()


def downgrade() -> None:
    _drop_append_only_triggers()
    _drop_rollup_trigger()
    op.drop_table("budget_usage_daily")
    op.drop_index("ix_budget_usage_records_user_id_created_at_id", "budget_usage_records")
    op.create_index(
        "ix_budget_usage_records_user_id_created_at",
        "budget_usage_records",
        ["user_id", "created_at"],
    )
    op.drop_index("ix_budget_audit_log_target_user_id_id", "budget_audit_log")
    op.drop_table("budget_audit_log")
    with op.batch_alter_table("budget_windows", naming_convention=NAMING_CONVENTION) as batch:
        batch.drop_constraint(op.f("ck_budget_windows_overrun_not_negative"), type_="check")
        batch.drop_column("overrun_micros")
    op.drop_table("budget_system_limits")
    # Users with no tier of their own go back to the default tier's name.
    op.execute("DELETE FROM budget_users WHERE tier IS NULL")
    with op.batch_alter_table("budget_users", naming_convention=NAMING_CONVENTION) as batch:
        for column in USER_LIMIT_COLUMNS:
            batch.drop_constraint(op.f(f"ck_budget_users_{column}_not_negative"), type_="check")
            batch.drop_column(column)
        batch.alter_column("tier", existing_type=sa.String(16), nullable=False)


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION budget_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
                    USING ERRCODE = 'restrict_violation';
            END
            $$
            """
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION budget_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION budget_refuse_change()"
            )
        return
    for table in APPEND_ONLY:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_append_only_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS budget_refuse_change()")
        return
    for table in APPEND_ONLY:
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_{event}")


ROLLUP_COLUMNS = (
    "user_id, day, model, size, quality, outcome, generations, cost_micros, successful, "
    "cache_hits, cost_saved_micros, last_at"
)


def _rollup_select(source: str = "budget_usage_records") -> str:
    """The rollup rows of the records in source, by user, UTC day and kind."""
    if op.get_bind().dialect.name == "postgresql":
        day = "(created_at AT TIME ZONE 'UTC')::date"
        successful, cached = "count(*) FILTER (WHERE success)", "count(*) FILTER (WHERE cached)"
    else:
        day = "date(created_at)"
        successful, cached = "sum(success)", "sum(cached)"
    return (
        f"SELECT user_id, {day}, model, size, quality, outcome, count(*), sum(cost_micros), "
        f"{successful}, {cached}, sum(cost_saved_micros), max(created_at) FROM {source} "
        "GROUP BY 1, 2, 3, 4, 5, 6"
    )


def _create_rollup_trigger() -> None:
    """Every record inserted is added to its rollup row by the same statement."""
    if op.get_bind().dialect.name == "postgresql":
        # Statement level, over the rows the statement added: one upsert per
        # rollup row however many records a statement inserts (a bulk load).
        op.execute(
            f"""
            CREATE FUNCTION budget_usage_daily_add() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO budget_usage_daily AS d ({ROLLUP_COLUMNS})
                {_rollup_select("added")}
                ORDER BY 1, 2, 3, 4, 5, 6
                ON CONFLICT (user_id, day, model, size, quality, outcome) DO UPDATE SET
                    generations = d.generations + EXCLUDED.generations,
                    cost_micros = d.cost_micros + EXCLUDED.cost_micros,
                    successful = d.successful + EXCLUDED.successful,
                    cache_hits = d.cache_hits + EXCLUDED.cache_hits,
                    cost_saved_micros = d.cost_saved_micros + EXCLUDED.cost_saved_micros,
                    last_at = GREATEST(d.last_at, EXCLUDED.last_at);
                RETURN NULL;
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER budget_usage_records_rollup AFTER INSERT ON budget_usage_records "
            "REFERENCING NEW TABLE AS added FOR EACH STATEMENT "
            "EXECUTE FUNCTION budget_usage_daily_add()"
        )
        return
    op.execute(
        f"""
        CREATE TRIGGER budget_usage_records_rollup AFTER INSERT ON budget_usage_records
        BEGIN
            INSERT INTO budget_usage_daily ({ROLLUP_COLUMNS})
            VALUES (NEW.user_id, date(NEW.created_at), NEW.model, NEW.size, NEW.quality,
                    NEW.outcome, 1, NEW.cost_micros, NEW.success, NEW.cached,
                    NEW.cost_saved_micros, NEW.created_at)
            ON CONFLICT (user_id, day, model, size, quality, outcome) DO UPDATE SET
                generations = generations + 1,
                cost_micros = cost_micros + excluded.cost_micros,
                successful = successful + excluded.successful,
                cache_hits = cache_hits + excluded.cache_hits,
                cost_saved_micros = cost_saved_micros + excluded.cost_saved_micros,
                last_at = max(last_at, excluded.last_at);
        END
        """
    )


def _drop_rollup_trigger() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS budget_usage_records_rollup"
        + (" ON budget_usage_records" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS budget_usage_daily_add()")
