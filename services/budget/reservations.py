"""Reservations: hold money before generating, then commit the actual cost or
release it. Also the read side of the same windows (GetLimits, CheckBudget).

Each use case is one transaction. A hold is four conditional UPDATEs, one per
window in lock order; if any window would go over its limit the transaction
rolls back and nothing is held, so committed + reserved never exceeds a limit.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from services.budget.domain import Outcome, Reservation, ReservationState, Usage
from services.budget.ledger import completed
from services.budget.limits import (
    PER_GENERATION_LIMIT_EXCEEDED,
    LimitPolicy,
    Tier,
    WindowLimit,
    held_window_keys,
    refusal_reason,
)
from services.budget.repository import Counters, Repository
from services.budget.validation import Violations
from services.budget.windows import Period, Scope, Span, WindowKey, day_of
from services.common.auth import Principal, Role
from services.common.clock import Clock
from services.common.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
)

log = logging.getLogger("recipeimage.budget.reservations")

RESERVATION_RELEASED = "RESERVATION_RELEASED"
RESERVATION_COMMITTED = "RESERVATION_COMMITTED"
REAP_BATCH = 100


@dataclass(frozen=True)
class WindowState:
    key: WindowKey
    limit_micros: int
    spent_micros: int
    reserved_micros: int
    source: str
    period: Period

    @property
    def remaining_micros(self) -> int:
        return max(0, self.limit_micros - self.spent_micros - self.reserved_micros)

    def admits(self, amount_micros: int) -> bool:
        return self.spent_micros + self.reserved_micros + amount_micros <= self.limit_micros


@dataclass(frozen=True)
class LimitsView:
    user_id: str
    tier: Tier
    per_generation_micros: int
    windows: list[WindowState]


@dataclass(frozen=True)
class BudgetCheck:
    allowed: bool
    # The ErrorInfo reason ReserveBudget would refuse with; "" when allowed.
    reason: str
    windows: list[WindowState]


@dataclass(frozen=True)
class Reserved:
    reservation: Reservation
    replayed: bool


@dataclass(frozen=True)
class Committed:
    reservation: Reservation
    # What this call added to spend: zero when the reservation was already committed.
    charged_micros: int


class Reservations:
    def __init__(
        self, sessions: sessionmaker, policy: LimitPolicy, clock: Clock, ttl: timedelta
    ) -> None:
        self._sessions = sessions
        self._policy = policy
        self._clock = clock
        self._ttl = ttl

    # Reading the windows

    def limits(self, principal: Principal, user_id: str) -> LimitsView:
        violations = Violations()
        user_id = violations.acting_for(principal, user_id)
        violations.raise_if_any()
        return self._view(user_id, self._clock.now())

    def check(self, principal: Principal, user_id: str, amount_micros: int) -> BudgetCheck:
        violations = Violations()
        user_id = violations.acting_for(principal, user_id)
        violations.positive("amount_micros", amount_micros)
        violations.raise_if_any()
        view = self._view(user_id, self._clock.now())
        if amount_micros > view.per_generation_micros:
            return BudgetCheck(False, PER_GENERATION_LIMIT_EXCEEDED, view.windows)
        for window in view.windows:
            if not window.admits(amount_micros):
                return BudgetCheck(False, refusal_reason(window.key), view.windows)
        return BudgetCheck(True, "", view.windows)

    def _view(self, user_id: str, now: datetime) -> LimitsView:
        with self._sessions.begin() as session:
            repository = Repository(session)
            tier = self._policy.tier_of(repository.user_tier(user_id))
            windows = self._policy.windows(user_id, tier, now)
            counters = repository.counters(w.key for w in windows)
        return LimitsView(
            user_id=user_id,
            tier=tier,
            per_generation_micros=self._policy.tier_limits(tier).per_generation_micros,
            windows=[_state(w, counters[w.key]) for w in windows],
        )

    # Holding money

    def reserve(
        self, principal: Principal, user_id: str, amount_micros: int, idempotency_key: str
    ) -> Reserved:
        violations = Violations()
        user_id = violations.acting_for(principal, user_id)
        violations.positive("amount_micros", amount_micros)
        violations.identifier("idempotency_key", idempotency_key)
        violations.raise_if_any()
        try:
            return self._reserve(user_id, amount_micros, idempotency_key, self._clock.now())
        except (IntegrityError, QuotaExceeded):
            # Two first calls with one key raced (PostgreSQL; SQLite serializes
            # them) and the other one won: its insert of the key made ours fail,
            # or its hold took the room ours needed. Ours rolled back whole; the
            # reservation that stands is the winner's.
            with self._sessions.begin() as session:
                existing = Repository(session).reservation_by_key(idempotency_key)
            if existing is None:
                raise
            return _replay(existing, user_id)

    def _reserve(self, user_id: str, amount: int, key: str, now: datetime) -> Reserved:
        with self._sessions.begin() as session:
            repository = Repository(session)
            existing = repository.reservation_by_key(key)
            if existing is not None:
                return _replay(existing, user_id)
            tier = self._policy.tier_of(repository.user_tier(user_id))
            per_generation = self._policy.tier_limits(tier).per_generation_micros
            if amount > per_generation:
                raise _per_generation_refusal(
                    user_id, tier, per_generation, amount, now, self._policy
                )
            windows = self._policy.windows(user_id, tier, now)
            repository.ensure_windows([w.key for w in windows])
            for window in windows:
                if not repository.try_hold(window.key, amount, window.limit_micros):
                    counters = repository.counters([window.key])[window.key]
                    raise _window_refusal(window, counters, amount, now)
            day = next(w.key.start_date for w in windows if w.key.span is Span.DAY)
            month = next(w.key.start_date for w in windows if w.key.span is Span.MONTH)
            reservation = Reservation(
                id=uuid.uuid4().hex,
                user_id=user_id,
                idempotency_key=key,
                amount_micros=amount,
                state=ReservationState.HELD,
                committed_micros=0,
                overrun=False,
                day_start=day,
                month_start=month,
                created_at=now,
                expires_at=now + self._ttl,
            )
            repository.add_reservation(reservation)
        return Reserved(reservation, replayed=False)

    # Settling

    def commit(
        self,
        principal: Principal,
        reservation_id: str,
        actual_cost_micros: int,
        usage: Usage,
    ) -> Committed:
        violations = Violations()
        violations.identifier("reservation_id", reservation_id)
        violations.not_negative("actual_cost_micros", actual_cost_micros)
        violations.usage(usage)
        violations.raise_if_any()
        now = self._clock.now()
        with self._sessions.begin() as session:
            repository = Repository(session)
            reservation = self._owned(repository, principal, reservation_id)
            if reservation.state is ReservationState.COMMITTED:
                return Committed(reservation, charged_micros=0)
            if reservation.state is ReservationState.RELEASED:
                raise FailedPrecondition(
                    "the reservation was released; reserve again to spend",
                    RESERVATION_RELEASED,
                    {"reservation_id": reservation.id},
                )
            # An expired reservation's hold went back to the windows already;
            # the money was spent all the same, so the spend is recorded.
            overrun = reservation.state is ReservationState.EXPIRED
            unhold = 0 if overrun else reservation.amount_micros
            for key in held_window_keys(
                reservation.user_id, reservation.day_start, reservation.month_start
            ):
                repository.settle(key, unhold_micros=unhold, spend_micros=actual_cost_micros)
            repository.finish_reservation(
                reservation.id,
                ReservationState.COMMITTED,
                now,
                committed_micros=actual_cost_micros,
                overrun=overrun,
            )
            self._record_attempt(
                repository,
                reservation,
                completed(
                    usage,
                    default_outcome=Outcome.GENERATED,
                    created_at=now,
                    cost_micros=actual_cost_micros,
                    **_owned_fields(reservation),
                ),
            )
        if overrun or actual_cost_micros > reservation.amount_micros:
            log.warning(
                "commit beyond the hold",
                extra={
                    "reservation_id": reservation.id,
                    "user_id": reservation.user_id,
                    "held_micros": reservation.amount_micros,
                    "actual_micros": actual_cost_micros,
                    "expired": overrun,
                },
            )
        committed = replace(
            reservation,
            state=ReservationState.COMMITTED,
            committed_micros=actual_cost_micros,
            overrun=overrun,
        )
        return Committed(committed, charged_micros=actual_cost_micros)

    def release(self, principal: Principal, reservation_id: str, usage: Usage) -> Reservation:
        violations = Violations()
        violations.identifier("reservation_id", reservation_id)
        violations.usage(usage)
        if usage.outcome is Outcome.GENERATED:
            violations.add(
                "usage.outcome", "a released reservation generated nothing; commit it instead"
            )
        violations.raise_if_any()
        now = self._clock.now()
        with self._sessions.begin() as session:
            repository = Repository(session)
            reservation = self._owned(repository, principal, reservation_id)
            if reservation.state is ReservationState.COMMITTED:
                raise FailedPrecondition(
                    "the reservation was committed; its spend stands",
                    RESERVATION_COMMITTED,
                    {"reservation_id": reservation.id},
                )
            if reservation.state is ReservationState.RELEASED:
                return reservation
            if reservation.state is ReservationState.HELD:
                for key in held_window_keys(
                    reservation.user_id, reservation.day_start, reservation.month_start
                ):
                    repository.settle(key, unhold_micros=reservation.amount_micros, spend_micros=0)
                repository.finish_reservation(reservation.id, ReservationState.RELEASED, now)
                reservation = replace(reservation, state=ReservationState.RELEASED)
            # An expired reservation stays expired; its attempt is still recorded.
            self._record_attempt(
                repository,
                reservation,
                completed(
                    usage,
                    default_outcome=Outcome.FAILED,
                    created_at=now,
                    cost_micros=0,
                    **_owned_fields(reservation),
                ),
            )
        return reservation

    def expire_due(self, now: datetime, batch: int = REAP_BATCH) -> int:
        """Expire held reservations past their TTL and give their money back.

        One short transaction per reservation; the conditional UPDATE lets
        several replicas run this at once without returning money twice.
        """
        expired = 0
        while True:
            with self._sessions.begin() as session:
                due = Repository(session).due_reservation_ids(now, batch)
            for reservation_id in due:
                with self._sessions.begin() as session:
                    repository = Repository(session)
                    reservation = repository.expire_if_held(reservation_id, now)
                    if reservation is None:
                        continue  # committed, released or reaped elsewhere meanwhile
                    for key in held_window_keys(
                        reservation.user_id, reservation.day_start, reservation.month_start
                    ):
                        repository.settle(
                            key, unhold_micros=reservation.amount_micros, spend_micros=0
                        )
                expired += 1
                log.info(
                    "reservation expired",
                    extra={
                        "reservation_id": reservation.id,
                        "user_id": reservation.user_id,
                        "amount_micros": reservation.amount_micros,
                    },
                )
            if len(due) < batch:
                return expired

    def _owned(
        self, repository: Repository, principal: Principal, reservation_id: str
    ) -> Reservation:
        reservation = repository.reservation_for_update(reservation_id)
        if reservation is None:
            raise NotFound(f"no reservation {reservation_id!r}")
        if principal.role is Role.USER and reservation.user_id != principal.subject:
            raise PermissionDenied("this reservation belongs to another user")
        return reservation

    @staticmethod
    def _record_attempt(repository: Repository, reservation: Reservation, usage: Usage) -> None:
        if not repository.insert_usage(usage):
            # A record with the key as request_id exists (RecordUsage, or an
            # earlier release after expiry); it stays the attempt's one record.
            log.info(
                "attempt already recorded",
                extra={"reservation_id": reservation.id, "request_id": usage.request_id},
            )


def _owned_fields(reservation: Reservation) -> dict[str, str]:
    return {
        "request_id": reservation.idempotency_key,
        "user_id": reservation.user_id,
        "reservation_id": reservation.id,
    }


def _replay(existing: Reservation, user_id: str) -> Reserved:
    if existing.user_id != user_id:
        raise PermissionDenied("this idempotency_key belongs to another user's reservation")
    return Reserved(existing, replayed=True)


def _state(window: WindowLimit, counters: Counters) -> WindowState:
    return WindowState(
        key=window.key,
        limit_micros=window.limit_micros,
        spent_micros=counters.spent_micros,
        reserved_micros=counters.reserved_micros,
        source=window.source,
        period=window.period,
    )


def _window_refusal(
    window: WindowLimit, counters: Counters, amount: int, now: datetime
) -> QuotaExceeded:
    key = window.key
    whose = f"user {key.subject}" if key.scope is Scope.USER else "the system"
    span = "daily" if key.span is Span.DAY else "monthly"
    return QuotaExceeded(
        f"{whose}'s {span} limit would be exceeded: limit {window.limit_micros}, spent "
        f"{counters.spent_micros}, reserved {counters.reserved_micros}, requested {amount} "
        f"micro-USD; the window resets at {window.period.end.isoformat()}",
        reason=window.reason,
        subject=f"user:{key.subject}" if key.scope is Scope.USER else "system",
        retry_after=window.period.end - now,
        metadata={
            "limit_micros": str(window.limit_micros),
            "spent_micros": str(counters.spent_micros),
            "reserved_micros": str(counters.reserved_micros),
            "requested_micros": str(amount),
            "window": key.name,
        },
    )


def _per_generation_refusal(
    user_id: str, tier: Tier, limit: int, amount: int, now: datetime, policy: LimitPolicy
) -> QuotaExceeded:
    # Waiting does not lift this limit; RetryInfo (always sent) points at the
    # next day so a client that obeys it blindly does not spin.
    return QuotaExceeded(
        f"{amount} micro-USD is above the {tier} tier's per-generation limit of {limit}",
        reason=PER_GENERATION_LIMIT_EXCEEDED,
        subject=f"user:{user_id}",
        retry_after=day_of(now, policy.zone).end - now,
        metadata={
            "limit_micros": str(limit),
            "spent_micros": "0",
            "reserved_micros": "0",
            "requested_micros": str(amount),
            "window": "per_generation",
        },
    )
