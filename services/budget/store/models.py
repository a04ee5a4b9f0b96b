"""BudgetService's tables (SQLAlchemy models), on a MetaData of its own (its migrations own them).

Money is always BigInteger micros. Instants are stored in UTC (UtcDateTime):
timestamptz on PostgreSQL, a sortable naive UTC string on SQLite.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Insert,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.budget.domain.usage import ID_LENGTH
from services.common.db import NAMING_CONVENTION, UtcDateTime, insert_for

# An autoincrementing 64-bit key; SQLite only autoincrements INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Limits an admin or a user may store; NULL means "none set".
_USER_LIMIT_COLUMNS = (
    "override_daily_micros",
    "override_monthly_micros",
    "override_per_generation_micros",
    "cap_daily_micros",
    "cap_monthly_micros",
    "cap_per_generation_micros",
)
# An admin's overrides of the tier's rate rules and cap; NULL: the tier's.
RATE_OVERRIDE_COLUMNS = (
    "override_requests_per_minute",
    "override_request_burst",
    "override_generations_per_hour",
    "override_max_concurrent_generations",
)


class UserRow(Base):
    """Users the service stores something for: a tier (NULL: the default tier),
    an admin's overrides of the tier's limits, the caps the user set on itself.
    Everyone else is on the default tier with no overrides and no caps."""

    __tablename__ = "budget_users"
    __table_args__ = (
        CheckConstraint("tier IN ('free', 'premium', 'pro')", name="tier"),
        *(
            CheckConstraint(f"{column} >= 0", name=f"{column}_not_negative")
            for column in _USER_LIMIT_COLUMNS
        ),
        *(
            CheckConstraint(f"{column} > 0", name=f"{column}_positive")
            for column in RATE_OVERRIDE_COLUMNS
        ),
    )

    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    tier: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    override_daily_micros: Mapped[int | None] = mapped_column(BigInteger())
    override_monthly_micros: Mapped[int | None] = mapped_column(BigInteger())
    override_per_generation_micros: Mapped[int | None] = mapped_column(BigInteger())
    cap_daily_micros: Mapped[int | None] = mapped_column(BigInteger())
    cap_monthly_micros: Mapped[int | None] = mapped_column(BigInteger())
    cap_per_generation_micros: Mapped[int | None] = mapped_column(BigInteger())
    override_requests_per_minute: Mapped[int | None] = mapped_column(BigInteger())
    override_request_burst: Mapped[int | None] = mapped_column(BigInteger())
    override_generations_per_hour: Mapped[int | None] = mapped_column(BigInteger())
    override_max_concurrent_generations: Mapped[int | None] = mapped_column(BigInteger())


class SystemLimitsRow(Base):
    """The one row of admin-set system limits; NULL: the configured limit.

    Stored, not configured per process, so a change reaches every replica at
    once. The migration creates the row; SetSystemLimits locks and updates it.
    """

    __tablename__ = "budget_system_limits"
    __table_args__ = (
        CheckConstraint("id = 1", name="one_row"),
        CheckConstraint("daily_limit_micros >= 0", name="daily_not_negative"),
        CheckConstraint("monthly_limit_micros >= 0", name="monthly_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, autoincrement=False)
    daily_limit_micros: Mapped[int | None] = mapped_column(BigInteger())
    monthly_limit_micros: Mapped[int | None] = mapped_column(BigInteger())
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class WindowRow(Base):
    """The counters of one calendar window of a user or of the whole system."""

    __tablename__ = "budget_windows"
    __table_args__ = (
        CheckConstraint("scope IN ('user', 'system')", name="scope"),
        CheckConstraint("kind IN ('day', 'month')", name="kind"),
        CheckConstraint("spent_micros >= 0", name="spent_not_negative"),
        CheckConstraint("reserved_micros >= 0", name="reserved_not_negative"),
        CheckConstraint("overrun_micros >= 0", name="overrun_not_negative"),
        # ListUsersNearLimits reads the current day's and month's user rows.
        Index("ix_budget_windows_scope_kind_start_date", "scope", "kind", "start_date"),
    )

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    subject: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    start_date: Mapped[date] = mapped_column(Date(), primary_key=True)
    spent_micros: Mapped[int] = mapped_column(BigInteger(), server_default=text("0"))
    reserved_micros: Mapped[int] = mapped_column(BigInteger(), server_default=text("0"))
    # Spend no hold covered: late commits, and commits above their hold.
    overrun_micros: Mapped[int] = mapped_column(BigInteger(), server_default=text("0"))
    # Every credit granted to this window instance, expired ones included
    # (budget_credits says which still count). Zero: the hold needs no look
    # at the credits; written in the grant's transaction (migration 0010).
    credit_micros: Mapped[int] = mapped_column(BigInteger(), server_default=text("0"))

    # The limit as of the last hold or limit change: a commit's statement
    # returns it, so threshold alerts cost no round trip (app.alerts).
    limit_micros: Mapped[int | None] = mapped_column(BigInteger())


class CreditRow(Base):
    """Credits an admin granted to one window instance (GrantCredit): the
    record of each; the window row's credit_micros is their sum."""

    __tablename__ = "budget_credits"
    __table_args__ = (
        CheckConstraint("scope IN ('user', 'system')", name="scope"),
        CheckConstraint("kind IN ('day', 'month')", name="kind"),
        CheckConstraint("amount_micros > 0", name="amount_positive"),
        # A window's credits that still count, read by the hold statement.
        Index(
            "ix_budget_credits_window_expires_at",
            "scope",
            "subject",
            "kind",
            "start_date",
            "expires_at",
        ),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(ID_LENGTH))
    kind: Mapped[str] = mapped_column(String(8))
    start_date: Mapped[date] = mapped_column(Date())
    amount_micros: Mapped[int] = mapped_column(BigInteger())
    reason: Mapped[str] = mapped_column(Text())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH))


class ReservationRow(Base):
    __tablename__ = "budget_reservations"
    __table_args__ = (
        CheckConstraint("state IN ('held', 'committed', 'released', 'expired')", name="state"),
        CheckConstraint("amount_micros > 0", name="amount_positive"),
        CheckConstraint("committed_micros >= 0", name="committed_not_negative"),
        UniqueConstraint(
            "user_id", "idempotency_key", name="uq_budget_reservations_user_id_idempotency_key"
        ),
        # The reaper's scan: held reservations by expiry.
        Index("ix_budget_reservations_state_expires_at", "state", "expires_at"),
        # A user's generations in flight (its held reservations), counted
        # under its concurrency cap.
        Index("ix_budget_reservations_user_id_state", "user_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(ID_LENGTH))
    amount_micros: Mapped[int] = mapped_column(BigInteger())
    state: Mapped[str] = mapped_column(String(16))
    day_start: Mapped[date] = mapped_column(Date())
    month_start: Mapped[date] = mapped_column(Date())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # When it was committed, released or expired.
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    committed_micros: Mapped[int] = mapped_column(BigInteger(), server_default=text("0"))
    overrun: Mapped[bool] = mapped_column(Boolean(), server_default=text("false"))


# The columns GetUsageStats aggregates (the covering index's INCLUDE list).
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


class UsageRow(Base):
    """The append-only usage ledger: one row per attempt, unique by user and
    request_id.

    The database refuses UPDATE and DELETE of its rows (triggers, migration
    0002), but for one amendment: an abandoned record may become its attempt's
    settled record (migration 0004).
    """

    __tablename__ = "budget_usage_records"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ('generated', 'cache_hit_exact', 'cache_hit_similar', 'failed', "
            "'fallback', 'refused', 'abandoned')",
            name="outcome",
        ),
        CheckConstraint("cost_micros >= 0", name="cost_not_negative"),
        CheckConstraint("cost_saved_micros >= 0", name="cost_saved_not_negative"),
        UniqueConstraint(
            "user_id", "request_id", name="uq_budget_usage_records_user_id_request_id"
        ),
        # Stats and ListUsage read one user's records in a time range. On
        # PostgreSQL the index also carries every column the stats aggregate,
        # so they are answered by an index-only scan of that user's range.
        Index(
            "ix_budget_usage_records_user_id_created_at_id",
            "user_id",
            "created_at",
            "id",
            postgresql_include=list(STATS_COLUMNS),
        ),
        # ExportUsage of one user: its records in ascending id (keyset).
        Index("ix_budget_usage_records_user_id_id", "user_id", "id"),
        # Cache busting: a user's generated records of one prompt fingerprint
        # in a time range (only generated records have one).
        Index(
            "ix_budget_usage_records_user_id_prompt_fingerprint_created_at",
            "user_id",
            "prompt_fingerprint",
            "created_at",
            postgresql_where=text("prompt_fingerprint IS NOT NULL"),
            sqlite_where=text("prompt_fingerprint IS NOT NULL"),
        ),
        # Cost optimization: earlier generations of a dish (any user's).
        Index(
            "ix_budget_usage_records_dish_key_created_at",
            "dish_key",
            "created_at",
            postgresql_where=text("dish_key IS NOT NULL"),
            sqlite_where=text("dish_key IS NOT NULL"),
        ),
        # Cost optimization: the cache hits that served an image.
        Index(
            "ix_budget_usage_records_image_id_hits",
            "image_id",
            postgresql_where=text("cached AND image_id IS NOT NULL"),
            sqlite_where=text("cached AND image_id IS NOT NULL"),
        ),
        # System metrics: the records of the partial hours at a range's edges.
        Index("ix_budget_usage_records_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    recipe_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    prompt: Mapped[str] = mapped_column(Text())
    prompt_length: Mapped[int] = mapped_column(Integer())
    size: Mapped[str] = mapped_column(String(32))
    quality: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str] = mapped_column(String(64))
    cost_micros: Mapped[int] = mapped_column(BigInteger())
    success: Mapped[bool] = mapped_column(Boolean())
    error_message: Mapped[str] = mapped_column(Text())
    fallback_used: Mapped[bool] = mapped_column(Boolean())
    generation_time_ms: Mapped[int] = mapped_column(BigInteger())
    cached: Mapped[bool] = mapped_column(Boolean())
    cache_hit: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(32))
    cost_saved_micros: Mapped[int] = mapped_column(BigInteger())
    input_tokens: Mapped[int] = mapped_column(BigInteger())
    output_tokens: Mapped[int] = mapped_column(BigInteger())
    reservation_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("budget_reservations.id")
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # A generated record's prompt without its noise, hashed (domain.abuse).
    prompt_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # Cost optimization's context (migration 0011); NULL in older records.
    dish_key: Mapped[str | None] = mapped_column(String(64))
    similar_allowed: Mapped[bool | None] = mapped_column(Boolean())
    custom_prompt: Mapped[bool | None] = mapped_column(Boolean())
    image_id: Mapped[str | None] = mapped_column(String(64))
    # What the attempt paid for (domain.usage.UsageKind; migration 0014): NULL
    # in older records, which are all images.
    kind: Mapped[str | None] = mapped_column(String(32))


class UsageDailyRow(Base):
    """The ledger rolled up by user, UTC day, model, size, quality and outcome.

    Maintained by the database itself: an AFTER INSERT trigger on the ledger
    adds each new record here in the same statement (migration 0002), so the
    rollup cannot drift from the append-only ledger. GetUsageStats reads whole
    UTC days from here and only the partial days at a range's edges from the
    ledger; reconciliation checks it against the ledger.
    """

    __tablename__ = "budget_usage_daily"
    # The alert evaluator's users of a day.
    __table_args__ = (Index("ix_budget_usage_daily_day", "day"),)

    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    day: Mapped[date] = mapped_column(Date(), primary_key=True)
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    size: Mapped[str] = mapped_column(String(32), primary_key=True)
    quality: Mapped[str] = mapped_column(String(16), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Counts of one user's day fit an INTEGER, which PostgreSQL sums as a
    # BIGINT (fast); money stays BIGINT micros.
    generations: Mapped[int] = mapped_column(Integer())
    cost_micros: Mapped[int] = mapped_column(BigInteger())
    successful: Mapped[int] = mapped_column(Integer())
    cache_hits: Mapped[int] = mapped_column(Integer())
    cost_saved_micros: Mapped[int] = mapped_column(BigInteger())
    last_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AuditRow(Base):
    """The append-only audit log of limit changes: who, what, before, after, when.

    before and after are JSON objects of the stored settings (see
    services.budget.store.audit); the database refuses UPDATE and DELETE.
    """

    __tablename__ = "budget_audit_log"
    __table_args__ = (
        CheckConstraint(
            "action IN ('set_user_tier', 'set_user_limits', 'set_spend_cap', "
            "'set_system_limits', 'block_user', 'unblock_user', 'set_user_rate_limits', "
            "'grant_credit')",
            name="action",
        ),
        Index("ix_budget_audit_log_target_user_id_id", "target_user_id", "id"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(ID_LENGTH))
    actor_role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    # The user whose settings changed; "" for the system limits.
    target_user_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    before_json: Mapped[str] = mapped_column(Text())
    after_json: Mapped[str] = mapped_column(Text())


class RateStateRow(Base):
    """GCRA's one value a rate rule's key: its theoretical arrival time, in
    microseconds since the epoch. Keys: "user_requests:<user>",
    "user_generations:<user>", "system_requests", "system_generations"."""

    __tablename__ = "budget_rate_states"

    key: Mapped[str] = mapped_column(String(ID_LENGTH + 32), primary_key=True)
    tat: Mapped[int] = mapped_column(BigInteger())


class BlockRow(Base):
    """Users' blocks, kept when lifted or expired. In force: not lifted and not
    expired; at most one a user (BlockUser lifts the one it replaces)."""

    __tablename__ = "budget_blocks"
    __table_args__ = (
        CheckConstraint("source IN ('admin', 'automatic')", name="source"),
        CheckConstraint("level >= 0", name="level_not_negative"),
        Index("ix_budget_blocks_user_id_lifted_at", "user_id", "lifted_at"),
        Index("ix_budget_blocks_lifted_at_id", "lifted_at", "id"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    reason: Mapped[str] = mapped_column(Text())
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    level: Mapped[int] = mapped_column(Integer(), server_default=text("0"))
    lifted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    lifted_by: Mapped[str | None] = mapped_column(String(ID_LENGTH))


class AbuseStreakRow(Base):
    """A user's count toward one abuse trigger (kind, domain.abuse): events
    since window_start, the last at last_at. For cache_busting, window_start
    is when the trigger last blocked the user (records before it are not
    counted again) and the row is only a lock."""

    __tablename__ = "budget_abuse_streaks"
    __table_args__ = (CheckConstraint("events >= 0", name="events_not_negative"),)

    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    events: Mapped[int] = mapped_column(Integer())
    window_start: Mapped[datetime] = mapped_column(UtcDateTime())
    last_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SystemSpendRow(Base):
    """Every user's ledger by UTC hour, day and month (kind "hour", "day" or
    "month", start the period's first instant), model, size and quality,
    striped over SYSTEM_SHARDS shards (the record's id % SYSTEM_SHARDS) so
    that no row is updated by every insert; a reader sums the shards.
    Maintained by triggers on the ledger (migration 0009)."""

    __tablename__ = "budget_system_spend"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer(), primary_key=True)
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    size: Mapped[str] = mapped_column(String(32), primary_key=True)
    quality: Mapped[str] = mapped_column(String(16), primary_key=True)
    generations: Mapped[int] = mapped_column(Integer())
    cost_micros: Mapped[int] = mapped_column(BigInteger())
    cost_saved_micros: Mapped[int] = mapped_column(BigInteger())
    # Migration 0015: what cost optimization's system summary and settings read.
    successful: Mapped[int] = mapped_column(Integer())
    cached: Mapped[int] = mapped_column(Integer())
    generated: Mapped[int] = mapped_column(Integer())
    generated_cost_micros: Mapped[int] = mapped_column(BigInteger())


class SystemOutcomesRow(Base):
    """Every user's ledger by UTC hour, day and month, shard (as SystemSpendRow),
    outcome and error reason (domain.system_metrics.error_reason).
    Triggers, migration 0009."""

    __tablename__ = "budget_system_outcomes"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer(), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(64), primary_key=True)
    generations: Mapped[int] = mapped_column(Integer())
    cost_micros: Mapped[int] = mapped_column(BigInteger())
    successful: Mapped[int] = mapped_column(Integer())
    exact_hits: Mapped[int] = mapped_column(Integer())
    similar_hits: Mapped[int] = mapped_column(Integer())
    cost_saved_micros: Mapped[int] = mapped_column(BigInteger())


class SystemTotalsRow(Base):
    """Every user's cost and attempts by UTC hour and day and shard (the
    trend's rows, without the kinds). Triggers, migration 0009."""

    __tablename__ = "budget_system_totals"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer(), primary_key=True)
    generations: Mapped[int] = mapped_column(Integer())
    cost_micros: Mapped[int] = mapped_column(BigInteger())


class UserTotalsRow(Base):
    """Each user's cost and attempts by UTC day and month (kind "day" or
    "month"), indexed by period and cost or attempts: a period's top users
    are the last entries of one index range, read backwards. Triggers,
    migration 0009."""

    __tablename__ = "budget_user_totals"
    __table_args__ = (
        Index(
            "ix_budget_user_totals_kind_start_cost_micros",
            "kind",
            "start",
            "cost_micros",
            "user_id",
        ),
        Index(
            "ix_budget_user_totals_kind_start_generations",
            "kind",
            "start",
            "generations",
            "user_id",
        ),
    )

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    start: Mapped[date] = mapped_column(Date(), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    generations: Mapped[int] = mapped_column(Integer())
    cost_micros: Mapped[int] = mapped_column(BigInteger())


class SystemPromptsRow(Base):
    """Every user's generated images whose prompt the ledger knows, by UTC
    hour and day (as SystemSpendRow), shard, model and who wrote the prompt
    (custom 1: the caller, 0: the service). Triggers, migration 0013."""

    __tablename__ = "budget_system_prompts"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer(), primary_key=True)
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    custom: Mapped[int] = mapped_column(Integer(), primary_key=True)
    generations: Mapped[int] = mapped_column(Integer())
    input_tokens: Mapped[int] = mapped_column(BigInteger())
    cost_micros: Mapped[int] = mapped_column(BigInteger())


class UserPromptsRow(Base):
    """SystemPromptsRow's figures of each user by UTC day (kind "day").
    Triggers, migration 0013."""

    __tablename__ = "budget_user_prompts"

    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    start: Mapped[date] = mapped_column(Date(), primary_key=True)
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    custom: Mapped[int] = mapped_column(Integer(), primary_key=True)
    generations: Mapped[int] = mapped_column(Integer())
    input_tokens: Mapped[int] = mapped_column(BigInteger())
    cost_micros: Mapped[int] = mapped_column(BigInteger())


class DishFirstRow(Base):
    """Each dish's earliest successful generation at each quality, any
    user's: cost optimization's "dish seen before" is one lookup of a few
    rows. Triggers, migration 0016 (the earliest instant wins)."""

    __tablename__ = "budget_dish_first_generations"

    dish_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    quality: Mapped[str] = mapped_column(String(16), primary_key=True)
    first_at: Mapped[datetime] = mapped_column(UtcDateTime())


class AlertRow(Base):
    """Every alert raised (domain.alerts), at most one per rule, subject,
    window and period: the unique key makes a second raise a no-op on every
    replica. xact_id: the PostgreSQL transaction that inserted the row (0 on
    SQLite), the stream's commit horizon (store.alerts)."""

    __tablename__ = "budget_alerts"
    __table_args__ = (
        CheckConstraint("severity IN ('info', 'warning', 'critical')", name="severity"),
        CheckConstraint("\"window\" IN ('daily', 'monthly', '')", name="window"),
        UniqueConstraint(
            "rule",
            "subject",
            "window",
            "period_key",
            name="uq_budget_alerts_rule_subject_window_period_key",
        ),
        # ListAlerts of one subject, newest first.
        Index("ix_budget_alerts_subject_id", "subject", "id"),
        # WatchAlerts: rows after a cursor (xact_id, id).
        Index("ix_budget_alerts_xact_id_id", "xact_id", "id"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(64))
    # A user id; "" for the system.
    subject: Mapped[str] = mapped_column(String(ID_LENGTH))
    window: Mapped[str] = mapped_column(String(16))
    period_key: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text())
    details_json: Mapped[str] = mapped_column(Text())
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime())
    silenced: Mapped[bool] = mapped_column(Boolean(), server_default=text("false"))
    xact_id: Mapped[int] = mapped_column(BigInteger(), server_default=text("0"))


class AlertSilenceRow(Base):
    """A rule silenced for a subject ("" the system) until expires_at (NULL:
    until lifted). Alerts raised meanwhile are recorded as silenced."""

    __tablename__ = "budget_alert_silences"

    rule: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created_by: Mapped[str] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class WebhookDeliveryRow(Base):
    """One alert owed to one webhook destination (domain.webhooks), at most one
    per (alert, destination). body is built when queued and sent unchanged on
    every attempt. A pending row (delivered_at NULL) is due at next_attempt_at;
    a claim moves next_attempt_at past the lease and sets lease_token, and only
    the claimant's token may record the attempt's end."""

    __tablename__ = "budget_webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "destination", name="uq_budget_webhook_deliveries_alert_id"),
        UniqueConstraint("delivery_id", name="uq_budget_webhook_deliveries_delivery_id"),
        # The deliverers' claim: pending rows by due time.
        Index(
            "ix_budget_webhook_deliveries_pending",
            "next_attempt_at",
            postgresql_where=text("delivered_at IS NULL"),
            sqlite_where=text("delivered_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(36))
    alert_id: Mapped[int] = mapped_column(
        BigInteger(), ForeignKey("budget_alerts.id", ondelete="CASCADE")
    )
    destination: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text())
    attempts: Mapped[int] = mapped_column(Integer(), server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    lease_token: Mapped[str | None] = mapped_column(String(36))
    last_error: Mapped[str] = mapped_column(String(500), server_default=text("''"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


metadata = Base.metadata


def table(model: type[Base]) -> Table:
    """A model's Table (typed as one, for Core statements)."""
    return metadata.tables[model.__tablename__]


def insert_or_skip(dialect: str, into: Table, *unique: Column[Any]) -> Insert:
    """INSERT ... ON CONFLICT (unique) DO NOTHING, on either backend."""
    statement = insert_for(dialect, into)
    return statement.on_conflict_do_nothing(index_elements=list(unique))
