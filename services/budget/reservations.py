"""Reservations: hold money before generating, then commit the actual cost or
release it. Also the read side of the same windows (GetLimits, CheckBudget).

Each use case is one transaction. A hold is one conditional multi-row upsert
over the four windows, their rows in lock order; if any window would go over
its limit the transaction rolls back and nothing is held, so committed +
reserved never exceeds a limit.

Lock order, everywhere: a reservation's own row first (its INSERT, or the
conditional UPDATE that commits, releases or expires it), then the ledger (the
usage record, and the rollup row its trigger updates), then the window rows by
WindowKey.lock_order (user day, user month, system day, system month).
The system rows every reservation shares are taken last, so they are held
only for two short statements and the COMMIT.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import sessionmaker

from services.budget.domain import Outcome, Reservation, ReservationState, Usage
from services.budget.ledger import completed
from services.budget.limits import (
    PER_GENERATION_LIMIT_EXCEEDED,
    EffectiveLimits,
    Limit,
    LimitPolicy,
    LimitValues,
    Tier,
    WindowLimit,
    held_window_keys,
    refusal_reason,
)
from services.budget.repository import Counters, Repository
from services.budget.usage_repository import UsageRepository
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
ATTEMPT_ALREADY_RECORDED = "ATTEMPT_ALREADY_RECORDED"
# The request_id of a commit's record when the key names another record.
SPEND_REQUEST_PREFIX = "reservation:"
REAP_BATCH = 100


@dataclass(frozen=True)
class WindowState:
    key: WindowKey
    limit_micros: int
    spent_micros: int
    reserved_micros: int
    source: str
    period: Period
    # Spend no hold covered (late commits, commits above their hold).
    overrun_micros: int = 0

    @property
    def remaining_micros(self) -> int:
        return max(0, self.limit_micros - self.spent_micros - self.reserved_micros)

    def admits(self, amount_micros: int) -> bool:
        return self.spent_micros + self.reserved_micros + amount_micros <= self.limit_micros


@dataclass(frozen=True)
class LimitsView:
    user_id: str
    tier: Tier
    per_generation: Limit
    windows: list[WindowState]
    overrides: LimitValues
    cap: LimitValues


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
        if amount_micros > view.per_generation.micros:
            return BudgetCheck(False, PER_GENERATION_LIMIT_EXCEEDED, view.windows)
        for window in view.windows:
            if not window.admits(amount_micros):
                return BudgetCheck(False, refusal_reason(window.key), view.windows)
        return BudgetCheck(True, "", view.windows)

    def _view(self, user_id: str, now: datetime) -> LimitsView:
        with self._sessions.begin() as session:
            repository = Repository(session)
            user, system = repository.limit_settings(user_id)
            limits = self._policy.effective(user, system)
            windows = self._policy.windows(limits, now)
            counters = repository.counters(w.key for w in windows)
        return LimitsView(
            user_id=user_id,
            tier=limits.tier,
            per_generation=limits.per_generation,
            windows=[_state(w, counters[w.key]) for w in windows],
            overrides=user.overrides,
            cap=user.cap,
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
        return self._reserve(user_id, amount_micros, idempotency_key, self._clock.now())

    def _reserve(self, user_id: str, amount: int, key: str, now: datetime) -> Reserved:
        """One transaction: one SELECT of what applies, the reservation's INSERT,
        then one conditional upsert per window in lock order. A refusal raises
        inside the transaction, so it rolls back whole and holds nothing."""
        with self._sessions.begin() as session:
            repository = Repository(session)
            context = repository.reserve_context(user_id, key)
            if context.existing_reservation_id is not None:
                return _replay(repository.reservation_by_key(key), user_id)
            if context.attempt_recorded:
                # Its one record exists (a cache hit, a refusal); a generation
                # under the same id could not be recorded with its spend.
                raise FailedPrecondition(
                    "an attempt with this idempotency key is already in the usage ledger; "
                    "use a new key for a new attempt",
                    ATTEMPT_ALREADY_RECORDED,
                    {"idempotency_key": key},
                )
            limits = self._policy.effective(context.user, context.system)
            if amount > limits.per_generation.micros:
                raise _per_generation_refusal(user_id, limits, amount, now, self._policy)
            windows = self._policy.windows(limits, now)
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
            if not repository.add_reservation(reservation):
                # A concurrent first call with this key won; ours waited for it.
                return _replay(repository.reservation_by_key(key), user_id)
            if all(amount <= window.limit_micros for window in windows):
                granted = repository.hold([(w.key, w.limit_micros) for w in windows], amount)
            else:
                granted = set()  # no window row needs to change to know it
            for window in windows:  # the first refusal in lock order is the reason
                if window.key not in granted:
                    counters = repository.counters([window.key])[window.key]
                    raise _window_refusal(window, counters, amount, now)
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
            reservation = repository.commit_if_open(reservation_id, actual_cost_micros, now)
            if reservation is None:
                current = self._found(repository, principal, reservation_id)
                if current.state is ReservationState.COMMITTED:
                    return Committed(current, charged_micros=0)
                raise FailedPrecondition(
                    "the reservation was released; reserve again to spend",
                    RESERVATION_RELEASED,
                    {"reservation_id": current.id},
                )
            _check_owner(principal, reservation)
            # An expired reservation's hold went back to the windows already;
            # the money was spent all the same, so the spend is recorded, and
            # what no hold covered is counted as overrun.
            late = reservation.overrun
            unhold = 0 if late else reservation.amount_micros
            uncovered = (
                actual_cost_micros
                if late
                else max(0, actual_cost_micros - reservation.amount_micros)
            )
            self._record_spend(
                UsageRepository(session),
                reservation,
                completed(
                    usage,
                    default_outcome=Outcome.GENERATED,
                    created_at=now,
                    cost_micros=actual_cost_micros,
                    **_owned_fields(reservation),
                ),
            )
            repository.settle(
                held_window_keys(
                    reservation.user_id, reservation.day_start, reservation.month_start
                ),
                unhold_micros=unhold,
                spend_micros=actual_cost_micros,
                overrun_micros=uncovered,
            )
        if uncovered:
            log.warning(
                "commit beyond the hold",
                extra={
                    "reservation_id": reservation.id,
                    "user_id": reservation.user_id,
                    "held_micros": reservation.amount_micros,
                    "actual_micros": actual_cost_micros,
                    "overrun_micros": uncovered,
                    "expired": late,
                },
            )
        return Committed(reservation, charged_micros=actual_cost_micros)

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
            reservation = repository.release_if(reservation_id, ReservationState.HELD, now)
            unhold = reservation is not None
            if reservation is None:
                # Expired: the reaper gave its money back; releasing it settles
                # it for good, so a commit arriving after this is refused.
                reservation = repository.release_if(reservation_id, ReservationState.EXPIRED, now)
            if reservation is None:
                current = self._found(repository, principal, reservation_id)
                if current.state is ReservationState.RELEASED:
                    return current
                raise FailedPrecondition(
                    "the reservation was committed; its spend stands",
                    RESERVATION_COMMITTED,
                    {"reservation_id": current.id},
                )
            _check_owner(principal, reservation)
            # The ledger before the windows: the lock order of every use case.
            self._record_attempt(
                UsageRepository(session),
                reservation,
                completed(
                    usage,
                    default_outcome=Outcome.FAILED,
                    created_at=now,
                    cost_micros=0,
                    **_owned_fields(reservation),
                ),
            )
            if unhold:
                repository.settle(
                    held_window_keys(
                        reservation.user_id, reservation.day_start, reservation.month_start
                    ),
                    unhold_micros=reservation.amount_micros,
                    spend_micros=0,
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
                    repository.settle(
                        held_window_keys(
                            reservation.user_id, reservation.day_start, reservation.month_start
                        ),
                        unhold_micros=reservation.amount_micros,
                        spend_micros=0,
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

    @staticmethod
    def _found(repository: Repository, principal: Principal, reservation_id: str) -> Reservation:
        reservation = repository.reservation(reservation_id)
        if reservation is None:
            raise NotFound(f"no reservation {reservation_id!r}")
        _check_owner(principal, reservation)
        return reservation

    @staticmethod
    def _record_spend(usage_repository: UsageRepository, reservation: Reservation, usage: Usage):  # type: ignore[no-untyped-def]
        """The commit's record, in the commit's transaction: the spend is never
        without its record. Should the key already name another record (only a
        RecordUsage racing this reservation's ReserveBudget can do that), the
        spend is recorded under the reservation's own id instead."""
        if usage_repository.insert(usage):
            return
        fallback = replace(usage, request_id=f"{SPEND_REQUEST_PREFIX}{reservation.id}")
        log.error(
            "the attempt's request_id names another usage record; spend recorded under the "
            "reservation's id",
            extra={
                "reservation_id": reservation.id,
                "request_id": usage.request_id,
                "recorded_as": fallback.request_id,
            },
        )
        if not usage_repository.insert(fallback):  # pragma: no cover - ids are unique
            raise RuntimeError(f"usage record {fallback.request_id!r} exists")

    @staticmethod
    def _record_attempt(
        usage_repository: UsageRepository, reservation: Reservation, usage: Usage
    ) -> None:
        if not usage_repository.insert(usage):
            # A record with the key as request_id exists (a RecordUsage racing
            # the reservation); it stays the attempt's one record.
            log.info(
                "attempt already recorded",
                extra={"reservation_id": reservation.id, "request_id": usage.request_id},
            )


def _check_owner(principal: Principal, reservation: Reservation) -> None:
    if principal.role is Role.USER and reservation.user_id != principal.subject:
        raise PermissionDenied("this reservation belongs to another user")


def _owned_fields(reservation: Reservation) -> dict[str, str]:
    return {
        "request_id": reservation.idempotency_key,
        "user_id": reservation.user_id,
        "reservation_id": reservation.id,
    }


def _replay(existing: Reservation | None, user_id: str) -> Reserved:
    if existing is None:  # pragma: no cover - a key's reservation is never deleted
        raise RuntimeError("the reservation of a taken idempotency key is missing")
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
        overrun_micros=counters.overrun_micros,
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
            "limit_source": window.source,
        },
    )


def _per_generation_refusal(
    user_id: str, limits: EffectiveLimits, amount: int, now: datetime, policy: LimitPolicy
) -> QuotaExceeded:
    # Waiting does not lift this limit; RetryInfo (always sent) points at the
    # next day so a client that obeys it blindly does not spin.
    limit = limits.per_generation
    return QuotaExceeded(
        f"{amount} micro-USD is above the per-generation limit of {limit.micros} "
        f"(set by {limit.source})",
        reason=PER_GENERATION_LIMIT_EXCEEDED,
        subject=f"user:{user_id}",
        retry_after=day_of(now, policy.zone).end - now,
        metadata={
            "limit_micros": str(limit.micros),
            "spent_micros": "0",
            "reserved_micros": "0",
            "requested_micros": str(amount),
            "window": "per_generation",
            "limit_source": limit.source,
        },
    )
