"""Persistence for the budget service's limits, windows and reservations. Every
method runs in the session it is given; the use cases decide where
transactions begin and end. (The ledger's queries are in usage_repository,
the audit log's in audit_repository, reconciliation's in reconcile.)

Window counters change only through single conditional statements, so a limit
holds however many transactions run at once, in every replica.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Insert, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.budget.domain import Reservation, ReservationState
from services.budget.limits import LimitValues, Tier, UserSettings
from services.budget.models import (
    ReservationRow,
    SystemLimitsRow,
    UsageRow,
    UserRow,
)
from services.budget.statements import (
    SYSTEM_LIMITS_ID,
    USER_COLUMNS,
    WINDOW_ROWS,
    Statements,
    statements,
)
from services.budget.statements import counters as counters_statement
from services.budget.windows import WindowKey


@dataclass(frozen=True)
class Counters:
    spent_micros: int = 0
    reserved_micros: int = 0
    overrun_micros: int = 0


@dataclass(frozen=True)
class ReserveContext:
    """What ReserveBudget reads in its one SELECT before it writes."""

    user: UserSettings
    system: LimitValues
    # The reservation this idempotency key already has, if any.
    existing_reservation_id: str | None
    # True when a usage record already carries the key as its request_id.
    attempt_recorded: bool


def insert_for(session: Session, model: type) -> Insert:
    """An INSERT that knows ON CONFLICT on both backends."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise RuntimeError(f"unsupported database dialect {dialect!r}")


def _user_settings(user_id: str, row) -> UserSettings:  # type: ignore[no-untyped-def]
    if row is None:
        return UserSettings(user_id)
    return UserSettings(
        user_id=user_id,
        tier=Tier(row.tier) if row.tier else None,
        overrides=LimitValues(
            row.override_daily_micros,
            row.override_monthly_micros,
            row.override_per_generation_micros,
        ),
        cap=LimitValues(
            row.cap_daily_micros, row.cap_monthly_micros, row.cap_per_generation_micros
        ),
    )


def _system_limits(row) -> LimitValues:  # type: ignore[no-untyped-def]
    if row is None:
        return LimitValues()
    return LimitValues(row.daily_limit_micros, row.monthly_limit_micros)


class Repository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # Limits: users' settings and the system's

    @property
    def _sql(self) -> Statements:
        return statements(self.session.get_bind().dialect.name)

    def limit_settings(self, user_id: str) -> tuple[UserSettings, LimitValues]:
        """The user's stored settings and the system limits, in one query."""
        row = self.session.execute(self._sql.limit_settings, {"user_id": user_id}).first()
        if row is None:  # the system row was deleted by hand: configured limits
            return self.user_settings(user_id), LimitValues()
        return _user_settings(user_id, row), _system_limits(row)

    def reserve_context(self, user_id: str, idempotency_key: str) -> ReserveContext:
        """Everything ReserveBudget must know before it writes, in one round trip."""
        row = self.session.execute(
            self._sql.reserve_context, {"user_id": user_id, "key": idempotency_key}
        ).first()
        if row is None:  # the system row was deleted by hand: configured limits
            existing = self.reservation_by_key(idempotency_key)
            recorded = self.session.scalar(
                select(exists().where(UsageRow.request_id == idempotency_key))
            )
            return ReserveContext(
                self.user_settings(user_id),
                LimitValues(),
                existing.id if existing else None,
                bool(recorded),
            )
        return ReserveContext(
            user=_user_settings(user_id, row),
            system=_system_limits(row),
            existing_reservation_id=row.existing_id,
            attempt_recorded=bool(row.recorded),
        )

    def user_settings(self, user_id: str, *, for_update: bool = False) -> UserSettings:
        statement = select(*USER_COLUMNS).where(UserRow.user_id == user_id)
        if for_update:
            statement = statement.with_for_update()
        return _user_settings(user_id, self.session.execute(statement).first())

    def lock_user(self, user_id: str, now: datetime) -> UserSettings:
        """The user's settings, its row created if need be and locked until the
        transaction ends (PostgreSQL; SQLite's BEGIN IMMEDIATE serializes writers)."""
        self.session.execute(
            insert_for(self.session, UserRow)
            .values(user_id=user_id, tier=None, created_at=now, updated_at=now)
            .on_conflict_do_nothing(index_elements=[UserRow.user_id])  # type: ignore[attr-defined]
        )
        return self.user_settings(user_id, for_update=True)

    def save_user(self, settings: UserSettings, now: datetime) -> None:
        """Store a user's settings; its row must exist (lock_user)."""
        self.session.execute(
            update(UserRow)
            .where(UserRow.user_id == settings.user_id)
            .values(
                tier=settings.tier.value if settings.tier else None,
                override_daily_micros=settings.overrides.daily_micros,
                override_monthly_micros=settings.overrides.monthly_micros,
                override_per_generation_micros=settings.overrides.per_generation_micros,
                cap_daily_micros=settings.cap.daily_micros,
                cap_monthly_micros=settings.cap.monthly_micros,
                cap_per_generation_micros=settings.cap.per_generation_micros,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )

    def set_user_tier(self, user_id: str, tier: str, now: datetime) -> None:
        """Put a user on a tier, keeping its overrides and caps (test support)."""
        settings = self.lock_user(user_id, now)
        self.save_user(UserSettings(user_id, Tier(tier), settings.overrides, settings.cap), now)

    def lock_system_limits(self) -> LimitValues:
        """The admin-set system limits, locked until the transaction ends."""
        self.session.execute(
            insert_for(self.session, SystemLimitsRow)
            .values(id=SYSTEM_LIMITS_ID)
            .on_conflict_do_nothing(index_elements=[SystemLimitsRow.id])  # type: ignore[attr-defined]
        )
        row = self.session.execute(
            select(SystemLimitsRow.daily_limit_micros, SystemLimitsRow.monthly_limit_micros)
            .where(SystemLimitsRow.id == SYSTEM_LIMITS_ID)
            .with_for_update()
        ).first()
        return _system_limits(row)

    def save_system_limits(self, limits: LimitValues, now: datetime) -> None:
        self.session.execute(
            update(SystemLimitsRow)
            .where(SystemLimitsRow.id == SYSTEM_LIMITS_ID)
            .values(
                daily_limit_micros=limits.daily_micros,
                monthly_limit_micros=limits.monthly_micros,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )

    # Windows

    def hold(self, limits: Sequence[tuple[WindowKey, int]], amount_micros: int) -> set[WindowKey]:
        """Hold amount in a reservation's four windows (with their limits, in
        lock order) where spent + reserved + amount stays within the limit:
        one conditional upsert for all four, one round trip. Returns the
        windows that took it; any other refuses, and the caller must roll back.
        Rows are created holding amount, so amount <= every limit must hold."""
        if len(limits) != WINDOW_ROWS or any(amount_micros > limit for _, limit in limits):
            raise ValueError("four windows, each with room for the amount, are needed")
        params: dict[str, object] = {"amount": amount_micros}
        for number, (key, limit) in enumerate(limits):
            params |= _window_params(key, f"w{number}_")
            params[f"limit_{key.scope.value}_{key.span.value}"] = limit
        granted = {(row.scope, row.kind) for row in self.session.execute(self._sql.hold, params)}
        return {key for key, _ in limits if (key.scope.value, key.span.value) in granted}

    def settle(
        self,
        keys: Sequence[WindowKey],
        *,
        unhold_micros: int,
        spend_micros: int,
        overrun_micros: int = 0,
    ) -> None:
        """In a reservation's four windows (in lock order): take unhold from
        reserved, add spend to spent and overrun to overrun. One statement."""
        params: dict[str, object] = {
            "unhold": unhold_micros,
            "spend": spend_micros,
            "overrun": overrun_micros,
        }
        for number, key in enumerate(keys):
            params |= _window_params(key, f"w{number}_")
        self.session.execute(self._sql.settle, params)

    def counters(self, keys: Iterable[WindowKey]) -> dict[WindowKey, Counters]:
        """Spent, reserved and overrun of each window, in one query; a window
        without a row has none."""
        keys = list(keys)
        params = {}
        for number, key in enumerate(keys):
            params |= {
                f"k{number}_{name[2:]}": value for name, value in _window_params(key).items()
            }
        rows = self.session.execute(counters_statement(len(keys)), params).all()
        found = {
            (row.scope, row.subject, row.kind, _as_date(row.start_date)): Counters(
                row.spent_micros, row.reserved_micros, row.overrun_micros
            )
            for row in rows
        }
        return {
            key: found.get((key.scope.value, key.subject, key.span.value, key.start_date))
            or Counters()
            for key in keys
        }

    # Reservations

    def add_reservation(self, reservation: Reservation) -> bool:
        """Insert a new reservation; False (nothing written) when its
        idempotency key is taken. A concurrent first call with the same key
        waits here until the other transaction ends."""
        params = {
            "id": reservation.id,
            "user_id": reservation.user_id,
            "idempotency_key": reservation.idempotency_key,
            "amount_micros": reservation.amount_micros,
            "state": reservation.state.value,
            "day_start": reservation.day_start,
            "month_start": reservation.month_start,
            "created_at": reservation.created_at,
            "expires_at": reservation.expires_at,
            "finished_at": None,
            "committed_micros": reservation.committed_micros,
            "overrun": reservation.overrun,
        }
        return self.session.execute(self._sql.add_reservation, params).first() is not None

    def reservation(self, reservation_id: str) -> Reservation | None:
        row = self.session.execute(
            self._sql.reservation_by_id, {"reservation_id": reservation_id}
        ).first()
        return _reservation(row) if row else None

    def reservation_by_key(self, idempotency_key: str) -> Reservation | None:
        row = self.session.execute(self._sql.reservation_by_key, {"key": idempotency_key}).first()
        return _reservation(row) if row else None

    def commit_if_open(
        self, reservation_id: str, committed_micros: int, now: datetime
    ) -> Reservation | None:
        """Commit a held or expired reservation in one conditional UPDATE; its
        overrun flag says it had expired. None when it is in neither state (or
        does not exist). A concurrent commit waits on the row, then finds it
        committed and gets None."""
        row = self.session.execute(
            self._sql.commit_if_open,
            {"reservation_id": reservation_id, "committed": committed_micros, "now": now},
        ).first()
        return _reservation(row) if row else None

    def release_if(
        self, reservation_id: str, state: ReservationState, now: datetime
    ) -> Reservation | None:
        """Release the reservation if it is in `state`; None otherwise."""
        row = self.session.execute(
            self._sql.release_if,
            {"reservation_id": reservation_id, "from_state": state.value, "now": now},
        ).first()
        return _reservation(row) if row else None

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
            self._sql.expire_if_held, {"reservation_id": reservation_id, "now": now}
        ).first()
        return _reservation(row) if row else None


def _window_params(key: WindowKey, prefix: str = "w_") -> dict[str, object]:
    return {
        f"{prefix}scope": key.scope.value,
        f"{prefix}subject": key.subject,
        f"{prefix}kind": key.span.value,
        f"{prefix}start_date": key.start_date,
    }


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
