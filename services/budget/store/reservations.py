"""Reservations: the hot path's statements, built once per dialect, and the
ReservationStore that runs them. A reservation changes state only through one
conditional UPDATE, so concurrent commits, releases and reapers never settle
it twice."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    Executable,
    Row,
    and_,
    bindparam,
    case,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from services.budget.domain.limits import LimitValues, UserSettings
from services.budget.domain.reservations import MAX_COMMIT_FACTOR, Reservation, ReservationState
from services.budget.store.limits import (
    LimitsStore,
    settings_select,
    system_limits_of,
    user_settings_of,
)
from services.budget.store.models import ReservationRow, UsageRow, insert_or_skip, table
from services.budget.store.windows import as_date

RESERVATIONS = table(ReservationRow)
USAGE = table(UsageRow)
HELD = ReservationState.HELD.value
EXPIRED = ReservationState.EXPIRED.value
COMMITTED = ReservationState.COMMITTED.value
RELEASED = ReservationState.RELEASED.value


@dataclass(frozen=True)
class ReserveContext:
    """What ReserveBudget reads in its one SELECT before it writes."""

    user: UserSettings
    system: LimitValues
    # The reservation this idempotency key already has, if any.
    existing_reservation_id: str | None
    # True when a usage record already carries the key as its request_id.
    attempt_recorded: bool


@dataclass(frozen=True)
class _Statements:
    reserve_context: Executable
    # PostgreSQL: the reservation's INSERT ... ON CONFLICT DO NOTHING and the
    # context in one statement (a data-modifying CTE), with added_id.
    add_with_context: Executable | None
    add_reservation: Executable
    commit_if_open: Executable
    release_if: Executable
    expire_if_held: Executable
    by_id: Executable
    by_key: Executable


@functools.cache
def _statements(dialect: str) -> _Statements:
    key: BindParameter[str] = bindparam("key")
    user: BindParameter[str] = bindparam("user_id")
    # Keys are the user's own: another user's key of the same text is another key.
    users_key = and_(RESERVATIONS.c.user_id == user, RESERVATIONS.c.idempotency_key == key)
    by_id = RESERVATIONS.c.id == bindparam("reservation_id")
    existing_id = select(RESERVATIONS.c.id).where(users_key).scalar_subquery().label("existing_id")
    recorded = exists().where(USAGE.c.user_id == user, USAGE.c.request_id == key).label("recorded")
    add_with_context = None
    if dialect == "postgresql":
        added = (
            insert_or_skip(
                dialect, RESERVATIONS, RESERVATIONS.c.user_id, RESERVATIONS.c.idempotency_key
            )
            .values({column.name: bindparam(f"new_{column.name}") for column in RESERVATIONS.c})
            .returning(RESERVATIONS.c.id)
            .cte("added")
        )
        # The subqueries see the snapshot before the INSERT: existing_id is
        # another call's reservation, never this one.
        add_with_context = settings_select(
            existing_id, recorded, select(added.c.id).scalar_subquery().label("added_id")
        )
    return _Statements(
        reserve_context=settings_select(existing_id, recorded),
        add_with_context=add_with_context,
        # Executed with every column as a parameter.
        add_reservation=insert_or_skip(
            dialect, RESERVATIONS, RESERVATIONS.c.user_id, RESERVATIONS.c.idempotency_key
        ).returning(RESERVATIONS.c.id),
        commit_if_open=update(RESERVATIONS)
        .where(by_id, RESERVATIONS.c.state.in_([HELD, EXPIRED]))
        .values(
            state=COMMITTED,
            finished_at=bindparam("now"),
            committed_micros=case(
                (
                    bindparam("committed") > RESERVATIONS.c.amount_micros * MAX_COMMIT_FACTOR,
                    RESERVATIONS.c.amount_micros * MAX_COMMIT_FACTOR,
                ),
                else_=bindparam("committed"),
            ),
            overrun=RESERVATIONS.c.state == EXPIRED,
        )
        .returning(*RESERVATIONS.c),
        release_if=update(RESERVATIONS)
        .where(by_id, RESERVATIONS.c.state == bindparam("from_state"))
        .values(state=RELEASED, finished_at=bindparam("now"))
        .returning(*RESERVATIONS.c),
        expire_if_held=update(RESERVATIONS)
        .where(
            by_id,
            RESERVATIONS.c.state == HELD,
            RESERVATIONS.c.expires_at <= bindparam("now"),
        )
        .values(state=EXPIRED, finished_at=bindparam("now"))
        .returning(*RESERVATIONS.c),
        by_id=select(RESERVATIONS).where(by_id),
        by_key=select(RESERVATIONS).where(users_key),
    )


class ReservationStore:
    def __init__(self, session: Session, dialect: str) -> None:
        self.session = session
        self._dialect = dialect
        self._sql = _statements(dialect)

    def load_reserve_context(self, user_id: str, idempotency_key: str) -> ReserveContext:
        """Everything ReserveBudget must know before it writes, in one round trip."""
        row = self.session.execute(
            self._sql.reserve_context, {"user_id": user_id, "key": idempotency_key}
        ).first()
        if row is None:  # the system row was deleted by hand: configured limits
            existing = self.load_by_key(user_id, idempotency_key)
            recorded = self.session.scalar(
                select(
                    exists().where(
                        USAGE.c.user_id == user_id, USAGE.c.request_id == idempotency_key
                    )
                )
            )
            return ReserveContext(
                LimitsStore(self.session, self._dialect).load_user_settings(user_id),
                LimitValues(),
                existing.id if existing else None,
                bool(recorded),
            )
        return ReserveContext(
            user=user_settings_of(user_id, row),
            system=system_limits_of(row),
            existing_reservation_id=row.existing_id,
            attempt_recorded=bool(row.recorded),
        )

    def add_with_context(self, reservation: Reservation) -> tuple[ReserveContext, bool]:
        """Insert a new reservation unless its idempotency key is taken (by
        this user), and read what ReserveBudget must know: one statement on
        PostgreSQL, two on SQLite. Returns the context and whether this call
        added the reservation; the caller rolls back if it refuses, so the
        INSERT ahead of the checks leaves nothing. A concurrent first call
        with the same key waits on the INSERT until the other transaction
        ends, then adds nothing."""
        if self._sql.add_with_context is None:
            context = self.load_reserve_context(reservation.user_id, reservation.idempotency_key)
            if context.existing_reservation_id is not None:
                return context, False
            return context, self.store_new_reservation(reservation)
        params = {f"new_{name}": value for name, value in _row_values(reservation).items()}
        params |= {"user_id": reservation.user_id, "key": reservation.idempotency_key}
        row = self.session.execute(self._sql.add_with_context, params).first()
        if row is None:  # the system row was deleted by hand: configured limits
            context = self.load_reserve_context(reservation.user_id, reservation.idempotency_key)
            mine = context.existing_reservation_id == reservation.id
            return replace(context, existing_reservation_id=None) if mine else context, mine
        context = ReserveContext(
            user=user_settings_of(reservation.user_id, row),
            system=system_limits_of(row),
            existing_reservation_id=row.existing_id,
            attempt_recorded=bool(row.recorded),
        )
        return context, row.added_id is not None

    def store_new_reservation(self, reservation: Reservation) -> bool:
        """Insert a new reservation; False (nothing written) when its
        idempotency key is taken (by this user). A concurrent first call with the same key
        waits here until the other transaction ends."""
        params = _row_values(reservation)
        return self.session.execute(self._sql.add_reservation, params).first() is not None

    def load(self, reservation_id: str) -> Reservation | None:
        row = self.session.execute(self._sql.by_id, {"reservation_id": reservation_id}).first()
        return _reservation(row) if row else None

    def load_by_key(self, user_id: str, idempotency_key: str) -> Reservation | None:
        """The user's reservation of this idempotency key, if any."""
        row = self.session.execute(
            self._sql.by_key, {"user_id": user_id, "key": idempotency_key}
        ).first()
        return _reservation(row) if row else None

    def commit_if_open(
        self, reservation_id: str, committed_micros: int, now: datetime
    ) -> Reservation | None:
        """Commit a held or expired reservation in one conditional UPDATE, at most
        MAX_COMMIT_FACTOR times its hold; its overrun flag says it had expired.
        None when it is in neither state (or does not exist). A concurrent
        commit waits on the row, then finds it committed and gets None."""
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

    def load_due_ids(self, now: datetime, limit: int) -> list[str]:
        """Held reservations whose time is up, oldest expiry first."""
        return list(
            self.session.scalars(
                select(RESERVATIONS.c.id)
                .where(RESERVATIONS.c.state == HELD, RESERVATIONS.c.expires_at <= now)
                .order_by(RESERVATIONS.c.expires_at, RESERVATIONS.c.id)
                .limit(limit)
            )
        )

    def held_totals(self) -> tuple[int, int]:
        """How many reservations are held now, and their micros: one read of the
        (state, expires_at) index's held range plus the rows' amounts."""
        row = self.session.execute(
            select(func.count(), func.coalesce(func.sum(RESERVATIONS.c.amount_micros), 0)).where(
                RESERVATIONS.c.state == HELD
            )
        ).one()
        return int(row[0]), int(row[1])

    def expire_if_held(self, reservation_id: str, now: datetime) -> Reservation | None:
        """Mark a due held reservation expired; None when it is no longer held.

        The state test in the WHERE clause makes this safe when several
        replicas reap at once: exactly one of them gets the row back.
        """
        row = self.session.execute(
            self._sql.expire_if_held, {"reservation_id": reservation_id, "now": now}
        ).first()
        return _reservation(row) if row else None


def _row_values(reservation: Reservation) -> dict[str, object]:
    """A new reservation's row, every column."""
    return {
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


def _reservation(row: Row[Any]) -> Reservation:
    return Reservation(
        id=row.id,
        user_id=row.user_id,
        idempotency_key=row.idempotency_key,
        amount_micros=row.amount_micros,
        state=ReservationState(row.state),
        committed_micros=row.committed_micros,
        overrun=bool(row.overrun),
        day_start=as_date(row.day_start),
        month_start=as_date(row.month_start),
        created_at=row.created_at,
        expires_at=row.expires_at,
    )
