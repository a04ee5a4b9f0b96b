"""Reservations: hold money before generating, then commit the actual cost or
release it; and the read side of the same windows (GetLimits, CheckBudget).

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
from dataclasses import replace
from datetime import datetime, timedelta

from services.budget.app.abuse import AbuseWatch
from services.budget.app.admission import Gate
from services.budget.app.alerts import AlertRaiser
from services.budget.app.settlement_records import (
    commit_settlement,
    log_commit_anomalies,
    store_attempt,
    store_spend,
)
from services.budget.app.window_views import limits_views
from services.budget.domain.alert_rules import WindowSpend, WindowWarning, window_warning
from services.budget.domain.limits import (
    PER_GENERATION_LIMIT_EXCEEDED,
    LimitPolicy,
    LimitValues,
    UserSettings,
    WindowLimit,
    held_window_keys,
)
from services.budget.domain.refusals import (
    money_refusal,
    per_generation_refusal,
    window_refusal,
)
from services.budget.domain.reservations import (
    AdmissionVerdict,
    BudgetCheck,
    Committed,
    Counters,
    LimitsView,
    Reservation,
    ReservationState,
    Reserved,
    Settlement,
)
from services.budget.domain.usage import Outcome, Usage, completed
from services.budget.domain.validation import Violations
from services.budget.domain.windows import Scope, Span, WindowKey, period_of
from services.budget.store.reservations import ReservationStore
from services.budget.store.unit_of_work import BudgetStore, Transaction
from services.common.clock import Clock
from services.common.errors import FailedPrecondition, NotFound, PermissionDenied

log = logging.getLogger("recipeimage.budget.reservations")

RESERVATION_RELEASED = "RESERVATION_RELEASED"
RESERVATION_COMMITTED = "RESERVATION_COMMITTED"
ATTEMPT_ALREADY_RECORDED = "ATTEMPT_ALREADY_RECORDED"
# The request_id of a commit's record when the key names another record.


class Reservations:
    """`violations` arguments carry what the edge already found wrong with the
    same request (its user id, its timestamps): all are refused together.
    `only_user` is a user caller's own id (it may settle only its own
    reservations); None for a trusted caller."""

    def __init__(
        self,
        store: BudgetStore,
        policy: LimitPolicy,
        clock: Clock,
        ttl: timedelta,
        gate: Gate,
        abuse: AbuseWatch,
        alerts: AlertRaiser,
    ):
        self._alerts = alerts
        self._store = store
        self._policy = policy
        self._clock = clock
        self._ttl = ttl
        self._gate = gate
        self._abuse = abuse

    # Reading the windows

    def limits(self, user_id: str) -> LimitsView:
        """The windows, and admission's rules, cap and block (GetLimits)."""
        now = self._clock.now()
        with self._store.reading() as tx:
            user, system, block = tx.blocks.load_context(user_id, now)
            view = self._view(tx, user, system, now)
            rates, concurrency = self._gate.snapshot(tx, user, view.tier, now)
            warnings = self._warnings(tx, view, now)
        return replace(
            view,
            rate_rules=rates,
            concurrency=concurrency,
            block=block,
            rate_overrides=user.rate_overrides,
            warnings=warnings,
        )

    def _warnings(
        self, tx: Transaction, view: LimitsView, now: datetime
    ) -> dict[WindowKey, WindowWarning]:
        """Each window's threshold reached and projected exhaustion: a user's
        windows at the pace of its last burn_rate_hours (one indexed sum of
        its ledger), the system's at the pace of the window so far (no scan
        of every user's records on a user's call)."""
        rules = self._alerts.rules
        pace = timedelta(hours=rules.burn_rate_hours)
        recent = tx.alert_figures.user_spend_since(view.user_id, now - pace)
        warnings = {}
        for state in view.windows:
            spend = WindowSpend(state.key, state.effective_limit_micros, state.spent_micros)
            if state.key.scope is Scope.USER:
                paced, over = recent, pace
            else:
                paced, over = state.spent_micros, max(now - state.period.start, timedelta(0))
            warnings[state.key] = window_warning(rules, spend, state.period, paced, over, now)
        return warnings

    def check(
        self,
        user_id: str,
        amount_micros: int,
        violations: Violations,
        *,
        include_admission: bool = False,
    ) -> BudgetCheck:
        """Whether a reservation of amount_micros would be granted now, and
        (include_admission) what Admit and ReserveBudget would refuse with:
        the same rules in the same order, read without writing anything."""
        violations.positive("amount_micros", amount_micros)
        violations.raise_if_any()
        now = self._clock.now()
        verdict = None
        with self._store.reading() as tx:
            if include_admission:
                user, system, block = tx.blocks.load_context(user_id, now)
            else:
                user, system = tx.limits.load_limit_settings(user_id)
            view = self._view(tx, user, system, now)
            if include_admission:
                admit = self._gate.peek_requests(tx, user, view.tier, block, now)
                generation = self._gate.peek_generation(tx, user, view.tier, now)
        money = money_refusal(
            user_id, view.per_generation, view.windows, amount_micros, now, self._policy.zone
        )
        if include_admission:
            per_generation_first = money is not None and money.info.reason == (
                PER_GENERATION_LIMIT_EXCEEDED
            )
            reserve = money if per_generation_first else (generation or money)
            verdict = AdmissionVerdict(admit, reserve, generation)
        return BudgetCheck(
            allowed=money is None,
            reason=money.info.reason if money is not None else "",
            windows=view.windows,
            per_generation=view.per_generation,
            admission=verdict,
        )

    def _view(
        self, tx: Transaction, user: UserSettings, system: LimitValues, now: datetime
    ) -> LimitsView:
        return limits_views(tx, self._policy, [user], system, now)[0]

    # Holding money

    def reserve(
        self, user_id: str, amount_micros: int, idempotency_key: str, violations: Violations
    ) -> Reserved:
        violations.positive("amount_micros", amount_micros)
        violations.identifier("idempotency_key", idempotency_key)
        violations.raise_if_any()
        return self._hold(user_id, amount_micros, idempotency_key, self._clock.now())

    def _hold(self, user_id: str, amount: int, key: str, now: datetime) -> Reserved:
        """One transaction: the reservation's INSERT with one SELECT of what
        applies (one statement on PostgreSQL), admission's rules (when any
        is enabled: one conditional upsert of the generation rates' keys, one
        count of the held), then one conditional upsert of the four windows
        in lock order. A refusal raises inside the transaction, so it rolls
        back whole: nothing is held and the reservation was never added."""
        with self._store.transaction() as tx:
            reservation = self._new_reservation(user_id, amount, key, now)
            context, added = tx.reservations.add_with_context(reservation)
            if context.existing_reservation_id is not None:
                return _replay(tx.reservations.load_by_key(user_id, key))
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
                raise per_generation_refusal(
                    user_id, limits.per_generation, amount, now, self._policy.zone
                )
            if not added:
                # A concurrent first call with this key won; ours waited for it.
                return _replay(tx.reservations.load_by_key(user_id, key))
            windows = self._policy.windows(limits, now)
            # Generation rates and concurrency caps: a replay never gets here.
            self._gate.take_generation(tx, context.user, limits.tier, now)
            _hold_in_windows(tx, windows, amount, now)
        return Reserved(reservation, replayed=False)

    def _new_reservation(self, user_id: str, amount: int, key: str, now: datetime) -> Reservation:
        zone = self._policy.zone
        return Reservation(
            id=uuid.uuid4().hex,
            user_id=user_id,
            idempotency_key=key,
            amount_micros=amount,
            state=ReservationState.HELD,
            committed_micros=0,
            overrun=False,
            day_start=period_of(Span.DAY, now, zone).start_date,
            month_start=period_of(Span.MONTH, now, zone).start_date,
            created_at=now,
            expires_at=now + self._ttl,
        )

    # Settling

    def commit(
        self,
        reservation_id: str,
        actual_cost_micros: int,
        usage: Usage,
        *,
        only_user: str | None,
        violations: Violations,
    ) -> Committed:
        violations.identifier("reservation_id", reservation_id)
        violations.not_negative("actual_cost_micros", actual_cost_micros)
        violations.usage(usage)
        violations.raise_if_any()
        now = self._clock.now()
        with self._store.transaction() as tx:
            reservation = tx.reservations.commit_if_open(reservation_id, actual_cost_micros, now)
            if reservation is None:
                current = _load_owned(tx.reservations, reservation_id, only_user)
                if current.state is ReservationState.COMMITTED:
                    return Committed(current, charged_micros=0)
                raise FailedPrecondition(
                    "the reservation was released; reserve again to spend",
                    RESERVATION_RELEASED,
                    {"reservation_id": current.id},
                )
            _check_owner(reservation, only_user)
            charged = reservation.committed_micros  # capped at MAX_COMMIT_FACTOR x the hold
            record = completed(
                usage,
                default_outcome=Outcome.GENERATED,
                created_at=now,
                cost_micros=charged,
                **_owned_fields(reservation),
            )
            settlement = commit_settlement(reservation, charged)
            store_spend(tx.usage, reservation, record)
            self._abuse.after_record(tx, record, now)  # cache busting, before the windows
            settled = tx.windows.settle(_keys(reservation), settlement, now)
            # Plain Python unless a threshold was crossed: no round trip.
            self._alerts.raise_after_settle(tx, settled, settlement.spend_micros)
        log_commit_anomalies(reservation, actual_cost_micros, settlement)
        return Committed(reservation, charged_micros=charged)

    def release(
        self, reservation_id: str, usage: Usage, *, only_user: str | None, violations: Violations
    ) -> Reservation:
        violations.identifier("reservation_id", reservation_id)
        violations.usage(usage)
        if usage.outcome is Outcome.GENERATED:
            violations.add(
                "usage.outcome", "a released reservation generated nothing; commit it instead"
            )
        violations.raise_if_any()
        now = self._clock.now()
        with self._store.transaction() as tx:
            reservation = tx.reservations.release_if(reservation_id, ReservationState.HELD, now)
            unhold = reservation is not None
            if reservation is None:
                # Expired: the reaper gave its money back; releasing it settles
                # it for good, so a commit arriving after this is refused.
                reservation = tx.reservations.release_if(
                    reservation_id, ReservationState.EXPIRED, now
                )
            if reservation is None:
                current = _load_owned(tx.reservations, reservation_id, only_user)
                if current.state is ReservationState.RELEASED:
                    return current
                raise FailedPrecondition(
                    "the reservation was committed; its spend stands",
                    RESERVATION_COMMITTED,
                    {"reservation_id": current.id},
                )
            _check_owner(reservation, only_user)
            # The ledger before the windows: the lock order of every use case.
            record = completed(
                usage,
                default_outcome=Outcome.FAILED,
                created_at=now,
                cost_micros=0,
                **_owned_fields(reservation),
            )
            if store_attempt(tx.usage, reservation, record):
                self._abuse.after_record(tx, record, now)  # streaks, before the windows
            if unhold:
                tx.windows.settle(_keys(reservation), Settlement(reservation.amount_micros, 0), now)
        return reservation


def _hold_in_windows(
    tx: Transaction, windows: list[WindowLimit], amount: int, now: datetime
) -> None:
    """Hold amount in the four windows, or raise the refusal of the first one
    (in lock order) without room, as CheckBudget says. Credits count inside
    the hold statement; only an amount above a window's own limit needs to
    read them first."""
    too_small = [w.key for w in windows if amount > w.limit_micros]
    credited: frozenset[WindowKey] = frozenset()
    if too_small:
        active = tx.credits.load_active_amounts(too_small, now)
        credited = frozenset(key for key in too_small if active[key])
    granted: set[WindowKey] | frozenset[WindowKey] = frozenset()
    if len(credited) == len(too_small):
        granted = tx.windows.hold([(w.key, w.limit_micros) for w in windows], amount, now, credited)
    if all(w.key in granted for w in windows):
        return
    # A window that took the amount holds it until the rollback: only the
    # others can be the one without room.
    keys = [w.key for w in windows if w.key not in granted]
    counters = tx.windows.load_counters(keys)
    credits = tx.credits.load_active_amounts(keys, now)
    untaken = [w for w in windows if w.key not in granted]
    rooms = (w for w in untaken if not _room(w, counters[w.key], credits[w.key], amount))
    refusing = next(rooms, untaken[0])
    raise window_refusal(refusing, counters[refusing.key], amount, now, credits[refusing.key])


def _room(window: WindowLimit, counters: Counters, credit_micros: int, amount: int) -> bool:
    held = counters.spent_micros + counters.reserved_micros + amount
    return held <= window.limit_micros + credit_micros


def _load_owned(store: ReservationStore, reservation_id: str, only_user: str | None) -> Reservation:
    reservation = store.load(reservation_id)
    if reservation is None:
        raise NotFound(f"no reservation {reservation_id!r}")
    _check_owner(reservation, only_user)
    return reservation


def _check_owner(reservation: Reservation, only_user: str | None) -> None:
    if only_user is not None and reservation.user_id != only_user:
        raise PermissionDenied("this reservation belongs to another user")


def _keys(reservation: Reservation) -> list[WindowKey]:
    return held_window_keys(reservation.user_id, reservation.day_start, reservation.month_start)


def _owned_fields(reservation: Reservation) -> dict[str, str]:
    return {
        "request_id": reservation.idempotency_key,
        "user_id": reservation.user_id,
        "reservation_id": reservation.id,
    }


def _replay(existing: Reservation | None) -> Reserved:
    if existing is None:  # pragma: no cover - a key's reservation is never deleted
        raise RuntimeError("the reservation of a taken idempotency key is missing")
    return Reserved(existing, replayed=True)
