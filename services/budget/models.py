"""The budget service's tables, on a MetaData of its own (its migrations own them).

Money is always BigInteger micros. Instants are stored in UTC (UtcDateTime):
timestamptz on PostgreSQL, a sortable naive UTC string on SQLite.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import NAMING_CONVENTION, UtcDateTime

ID_LENGTH = 200  # user ids, idempotency keys, request ids


# An autoincrementing 64-bit key; SQLite only autoincrements INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UserRow(Base):
    """Users the service knows something about; the rest are on the default tier."""

    __tablename__ = "budget_users"
    __table_args__ = (CheckConstraint("tier IN ('free', 'premium', 'pro')", name="tier"),)

    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    tier: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class WindowRow(Base):
    """The counters of one calendar window of a user or of the whole system."""

    __tablename__ = "budget_windows"
    __table_args__ = (
        CheckConstraint("scope IN ('user', 'system')", name="scope"),
        CheckConstraint("kind IN ('day', 'month')", name="kind"),
        CheckConstraint("spent_micros >= 0", name="spent_not_negative"),
        CheckConstraint("reserved_micros >= 0", name="reserved_not_negative"),
    )

    scope: Mapped[str] = mapped_column(String(8), primary_key=True)
    subject: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    start_date: Mapped[date] = mapped_column(Date(), primary_key=True)
    spent_micros: Mapped[int] = mapped_column(BigInteger(), server_default=text("0"))
    reserved_micros: Mapped[int] = mapped_column(BigInteger(), server_default=text("0"))


class ReservationRow(Base):
    __tablename__ = "budget_reservations"
    __table_args__ = (
        CheckConstraint("state IN ('held', 'committed', 'released', 'expired')", name="state"),
        CheckConstraint("amount_micros > 0", name="amount_positive"),
        CheckConstraint("committed_micros >= 0", name="committed_not_negative"),
        # The reaper's scan: held reservations by expiry.
        Index("ix_budget_reservations_state_expires_at", "state", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
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


class UsageRow(Base):
    """The append-only usage ledger: one row per attempt, unique by request_id."""

    __tablename__ = "budget_usage_records"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ('generated', 'cache_hit_exact', 'cache_hit_similar', 'failed', "
            "'fallback', 'refused')",
            name="outcome",
        ),
        CheckConstraint("cost_micros >= 0", name="cost_not_negative"),
        CheckConstraint("cost_saved_micros >= 0", name="cost_saved_not_negative"),
        Index("ix_budget_usage_records_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
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


metadata = Base.metadata
