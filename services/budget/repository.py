"""Persistence for the budget service. Every method runs in the session it is
given; the use cases decide where transactions begin and end.

Window counters change only through conditional single-statement UPDATEs, so
a limit holds however many transactions run at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Insert, and_, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.budget.domain import Outcome, Reservation, ReservationState, Usage
from services.budget.models import ReservationRow, UsageRow, UserRow, WindowRow
from services.budget.windows import Period, WindowKey


@dataclass(frozen=True)
class Counters:
    spent_micros: int = 0
    reserved_micros: int = 0


@dataclass(frozen=True)
class UsageTotals:
    generations: int
    cost_micros: int
    successful: int
    failed: int
    last_at: datetime | None
    cache_hits: int
    cost_saved_micros: int
    month_generations: int
    month_cost_micros: int


def _key_matches(key: WindowKey):  # type: ignore[no-untyped-def]
    return and_(
        WindowRow.scope == key.scope.value,
        WindowRow.subject == key.subject,
        WindowRow.kind == key.span.value,
        WindowRow.start_date == key.start_date,
    )


class Repository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _insert(self, model: type) -> Insert:
        """An INSERT that knows ON CONFLICT on both backends."""
        dialect = self.session.get_bind().dialect.name
        if dialect == "postgresql":
            return postgresql.insert(model)
        if dialect == "sqlite":
            return sqlite.insert(model)
        raise RuntimeError(f"unsupported database dialect {dialect!r}")

    # Users

    def user_tier(self, user_id: str) -> str | None:
        return self.session.scalar(select(UserRow.tier).where(UserRow.user_id == user_id))

    def set_user_tier(self, user_id: str, tier: str, now: datetime) -> None:
        statement = self._insert(UserRow).values(
            user_id=user_id, tier=tier, created_at=now, updated_at=now
        )
        statement = statement.on_conflict_do_update(  # type: ignore[attr-defined]
            index_elements=[UserRow.user_id],
            set_={"tier": tier, "updated_at": now},
        )
        self.session.execute(statement)

    # Windows

    def ensure_windows(self, keys: Sequence[WindowKey]) -> None:
        """Create the counter rows that do not exist yet, in the order given."""
        statement = (
            self._insert(WindowRow)
            .values(
                [
                    {
                        "scope": key.scope.value,
                        "subject": key.subject,
                        "kind": key.span.value,
                        "start_date": key.start_date,
                        "spent_micros": 0,
                        "reserved_micros": 0,
                    }
                    for key in keys
                ]
            )
            .on_conflict_do_nothing()  # type: ignore[attr-defined]
        )
        self.session.execute(statement)

    def try_hold(self, key: WindowKey, amount_micros: int, limit_micros: int) -> bool:
        """Add amount to reserved when spent + reserved + amount stays within the limit."""
        statement = (
            update(WindowRow)
            .where(
                _key_matches(key),
                WindowRow.spent_micros + WindowRow.reserved_micros + amount_micros <= limit_micros,
            )
            .values(reserved_micros=WindowRow.reserved_micros + amount_micros)
            .returning(WindowRow.reserved_micros)
            .execution_options(synchronize_session=False)
        )
        return self.session.execute(statement).first() is not None

    def settle(self, key: WindowKey, *, unhold_micros: int, spend_micros: int) -> None:
        """Take unhold from reserved and add spend to spent, on an existing row."""
        statement = (
            update(WindowRow)
            .where(_key_matches(key))
            .values(
                reserved_micros=WindowRow.reserved_micros - unhold_micros,
                spent_micros=WindowRow.spent_micros + spend_micros,
            )
            .returning(WindowRow.reserved_micros)
            .execution_options(synchronize_session=False)
        )
        if self.session.execute(statement).first() is None:
            raise RuntimeError(f"the window row {key} of a reservation is missing")

    def counters(self, keys: Iterable[WindowKey]) -> dict[WindowKey, Counters]:
        """Spent and reserved of each window; a window without a row has none."""
        found = {}
        for key in keys:
            row = self.session.execute(
                select(WindowRow.spent_micros, WindowRow.reserved_micros).where(_key_matches(key))
            ).first()
            found[key] = Counters(row.spent_micros, row.reserved_micros) if row else Counters()
        return found

    # Reservations

    def add_reservation(self, reservation: Reservation) -> None:
        self.session.execute(
            insert(ReservationRow).values(
                id=reservation.id,
                user_id=reservation.user_id,
                idempotency_key=reservation.idempotency_key,
                amount_micros=reservation.amount_micros,
                state=reservation.state.value,
                day_start=reservation.day_start,
                month_start=reservation.month_start,
                created_at=reservation.created_at,
                expires_at=reservation.expires_at,
                committed_micros=reservation.committed_micros,
                overrun=reservation.overrun,
            )
        )

    def reservation_by_key(self, idempotency_key: str) -> Reservation | None:
        row = self.session.scalar(
            select(ReservationRow).where(ReservationRow.idempotency_key == idempotency_key)
        )
        return _reservation(row) if row else None

    def reservation_for_update(self, reservation_id: str) -> Reservation | None:
        """The reservation, locked until the transaction ends (on PostgreSQL;
        SQLite's BEGIN IMMEDIATE already serializes writers)."""
        row = self.session.scalar(
            select(ReservationRow).where(ReservationRow.id == reservation_id).with_for_update()
        )
        return _reservation(row) if row else None

    def finish_reservation(
        self,
        reservation_id: str,
        state: ReservationState,
        now: datetime,
        *,
        committed_micros: int = 0,
        overrun: bool = False,
    ) -> None:
        self.session.execute(
            update(ReservationRow)
            .where(ReservationRow.id == reservation_id)
            .values(
                state=state.value,
                finished_at=now,
                committed_micros=committed_micros,
                overrun=overrun,
            )
            .execution_options(synchronize_session=False)
        )

    def due_reservation_ids(self, now: datetime, limit: int) -> list[str]:
        """Held reservations whose time is up, oldest expiry first."""
        return list(
            self.session.scalars(
                select(ReservationRow.id)
                .where(
                    ReservationRow.state == ReservationState.HELD.value,
                    ReservationRow.expires_at <= now,
                )
                .order_by(ReservationRow.expires_at, ReservationRow.id)
                .limit(limit)
            )
        )

    def expire_if_held(self, reservation_id: str, now: datetime) -> Reservation | None:
        """Mark a due held reservation expired; None when it is no longer held.

        The state test in the WHERE clause makes this safe when several
        replicas reap at once: exactly one of them gets the row back.
        """
        row = self.session.execute(
            update(ReservationRow)
            .where(
                ReservationRow.id == reservation_id,
                ReservationRow.state == ReservationState.HELD.value,
                ReservationRow.expires_at <= now,
            )
            .values(state=ReservationState.EXPIRED.value, finished_at=now)
            .returning(*ReservationRow.__table__.columns)
            .execution_options(synchronize_session=False)
        ).first()
        return _reservation(row) if row else None

    # Usage ledger

    def insert_usage(self, usage: Usage) -> bool:
        """Append a usage record; False (and nothing written) when its request_id exists."""
        statement = (
            self._insert(UsageRow)
            .values(_usage_values(usage))
            .on_conflict_do_nothing(index_elements=[UsageRow.request_id])  # type: ignore[attr-defined]
            .returning(UsageRow.id)
        )
        return self.session.execute(statement).first() is not None

    def usage_by_request_id(self, request_id: str) -> Usage | None:
        row = self.session.scalar(select(UsageRow).where(UsageRow.request_id == request_id))
        return _usage(row) if row else None

    def usage_totals(self, user_id: str, period: Period, month: Period) -> UsageTotals:
        """One aggregate query over the user's records in period and in month."""
        in_period = and_(UsageRow.created_at >= period.start, UsageRow.created_at < period.end)
        in_month = and_(UsageRow.created_at >= month.start, UsageRow.created_at < month.end)
        statement = select(
            func.count().filter(in_period).label("generations"),
            func.sum(UsageRow.cost_micros).filter(in_period).label("cost"),
            func.count().filter(and_(in_period, UsageRow.success.is_(True))).label("successful"),
            func.count().filter(and_(in_period, UsageRow.success.is_(False))).label("failed"),
            func.max(UsageRow.created_at).filter(in_period).label("last_at"),
            func.count().filter(and_(in_period, UsageRow.cached.is_(True))).label("cache_hits"),
            func.sum(UsageRow.cost_saved_micros).filter(in_period).label("saved"),
            func.count().filter(in_month).label("month_generations"),
            func.sum(UsageRow.cost_micros).filter(in_month).label("month_cost"),
        ).where(
            UsageRow.user_id == user_id,
            UsageRow.created_at >= min(period.start, month.start),
            UsageRow.created_at < max(period.end, month.end),
        )
        row = self.session.execute(statement).one()
        return UsageTotals(
            generations=int(row.generations),
            # SUM over BIGINT is NUMERIC on PostgreSQL: int() keeps it exact.
            cost_micros=int(row.cost or 0),
            successful=int(row.successful),
            failed=int(row.failed),
            last_at=row.last_at,
            cache_hits=int(row.cache_hits),
            cost_saved_micros=int(row.saved or 0),
            month_generations=int(row.month_generations),
            month_cost_micros=int(row.month_cost or 0),
        )


def _reservation(row) -> Reservation:  # type: ignore[no-untyped-def]
    return Reservation(
        id=row.id,
        user_id=row.user_id,
        idempotency_key=row.idempotency_key,
        amount_micros=row.amount_micros,
        state=ReservationState(row.state),
        committed_micros=row.committed_micros,
        overrun=bool(row.overrun),
        day_start=_as_date(row.day_start),
        month_start=_as_date(row.month_start),
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


_USAGE_FIELDS = (
    "request_id",
    "user_id",
    "recipe_id",
    "prompt",
    "prompt_length",
    "size",
    "quality",
    "model",
    "provider",
    "cost_micros",
    "success",
    "error_message",
    "fallback_used",
    "generation_time_ms",
    "cached",
    "cache_hit",
    "cost_saved_micros",
    "input_tokens",
    "output_tokens",
    "created_at",
)


def _usage_values(usage: Usage) -> dict[str, object]:
    if usage.outcome is None or usage.created_at is None:
        raise ValueError("a stored usage record needs an outcome and a created_at")
    values: dict[str, object] = {name: getattr(usage, name) for name in _USAGE_FIELDS}
    values["outcome"] = usage.outcome.value
    values["reservation_id"] = usage.reservation_id or None
    return values


def _usage(row: UsageRow) -> Usage:
    values = {name: getattr(row, name) for name in _USAGE_FIELDS}
    return Usage(
        **values,
        outcome=Outcome(row.outcome),
        reservation_id=row.reservation_id or "",
    )
