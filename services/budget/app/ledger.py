"""RecordUsage: an attempt that held no reservation (a cache hit, a refusal)
enters the append-only ledger, once per request_id."""

from __future__ import annotations

from datetime import datetime

from services.budget.app.abuse import AbuseWatch
from services.budget.domain.usage import Outcome, Recorded, Usage, UsageKind, completed
from services.budget.domain.validation import Violations
from services.budget.store.unit_of_work import BudgetStore, Transaction
from services.common.clock import Clock
from services.common.errors import DomainError, FailedPrecondition, InvalidArgument

ATTEMPT_HAS_RESERVATION = "ATTEMPT_HAS_RESERVATION"
# The most records RecordUsageBatch takes at once.
MAX_BATCH = 500


def _check_unreserved(violations: Violations, usage: Usage) -> None:
    """What RecordUsage takes: an attempt without a reservation or a spend."""
    violations.identifier("usage.request_id", usage.request_id)
    if usage.outcome is None:
        violations.add("usage.outcome", "required")
    if usage.reservation_id:
        violations.add(
            "usage.reservation_id",
            "must be empty: commit or release the reservation to record its attempt",
        )
    if usage.kind is UsageKind.DISH_RECOGNITION:
        _check_dish_recognition(violations, usage)
    else:
        # An image's spend enters the ledger only with a commit, which charges the windows too.
        if usage.outcome is Outcome.GENERATED:
            violations.add("usage.outcome", "a generated image is paid for: reserve, then commit")
        if usage.cost_micros > 0:
            violations.add("usage.cost_micros", "must be 0: spend is recorded by CommitReservation")
    violations.usage(usage)


def _check_dish_recognition(violations: Violations, usage: Usage) -> None:
    """The dish model's answer: recorded with its cost (a fraction of a cent,
    not held against the limits; README "The dish model"), and never an image."""
    if usage.outcome not in (Outcome.GENERATED, Outcome.FAILED, None):
        violations.add("usage.outcome", "a dish recognition is GENERATED or FAILED")
    if usage.cached or usage.cache_hit or usage.cost_saved_micros or usage.image_id:
        violations.add("usage.kind", "a dish recognition serves no image")


class Ledger:
    def __init__(self, store: BudgetStore, clock: Clock, abuse: AbuseWatch) -> None:
        self._store = store
        self._clock = clock
        self._abuse = abuse

    def record(self, user_id: str, usage: Usage, violations: Violations) -> Recorded:
        """Record usage for user_id (the edge resolved it; `violations` holds
        what the edge found wrong already)."""
        _check_unreserved(violations, usage)
        violations.raise_if_any()
        now = self._clock.now()
        record = completed(usage, default_outcome=Outcome.FAILED, created_at=now, user_id=user_id)
        with self._store.transaction() as tx:
            if tx.usage.store_usage(record):
                if tx.reservations.load_by_key(user_id, record.request_id) is not None:
                    # Raising rolls the insert back: the attempt held money, and
                    # its record is written when that reservation is settled.
                    raise FailedPrecondition(
                        "this request_id has a reservation: commit or release it to record "
                        "the attempt",
                        ATTEMPT_HAS_RESERVATION,
                        {"request_id": record.request_id},
                    )
                self._abuse.after_record(tx, record, now)
                return Recorded(record, duplicate=False)
            existing = tx.usage.load_by_request_id(user_id, record.request_id)
        if existing is None:  # pragma: no cover - the conflicting row cannot vanish
            raise RuntimeError(f"usage record {record.request_id!r} conflicted but is missing")
        return Recorded(existing, duplicate=True)

    def record_each(
        self, records: list[tuple[str, Usage, Violations]]
    ) -> list[Recorded | DomainError]:
        """RecordUsageBatch: each (user_id, usage, violations) recorded as
        record() would, on its own, so one bad record fails only itself; its
        error in its place. Each is idempotent by (user_id, request_id), so a
        batch sent twice, or by two senders at once, writes each record once."""
        if not records or len(records) > MAX_BATCH:
            raise InvalidArgument.field("usages", f"from 1 to {MAX_BATCH} records")
        results: list[Recorded | DomainError | None] = []
        valid: list[tuple[int, str, Usage]] = []
        for user_id, usage, violations in records:
            try:
                _check_unreserved(violations, usage)
                violations.raise_if_any()
            except DomainError as error:
                results.append(error)
                continue
            valid.append((len(results), user_id, usage))
            results.append(None)
        now = self._clock.now()
        # One transaction for the batch, a savepoint a record: a record that
        # must not be written is rolled back alone.
        with self._store.transaction() as tx:
            # In key order: two batches holding the same records lock them
            # in one order, so they wait on each other, never deadlock.
            for index, user_id, usage in sorted(valid, key=lambda v: (v[1], v[2].request_id)):
                record = completed(
                    usage, default_outcome=Outcome.FAILED, created_at=now, user_id=user_id
                )
                try:
                    with tx.session.begin_nested():
                        results[index] = self._store_one(tx, record, now)
                except DomainError as error:
                    results[index] = error
        return [result for result in results if result is not None]

    def _store_one(self, tx: Transaction, record: Usage, now: datetime) -> Recorded:
        """record() inside a caller's transaction (its savepoint)."""
        if tx.usage.store_usage(record):
            if tx.reservations.load_by_key(record.user_id, record.request_id) is not None:
                raise FailedPrecondition(
                    "this request_id has a reservation: commit or release it to record the attempt",
                    ATTEMPT_HAS_RESERVATION,
                    {"request_id": record.request_id},
                )
            self._abuse.after_record(tx, record, now)
            return Recorded(record, duplicate=False)
        existing = tx.usage.load_by_request_id(record.user_id, record.request_id)
        if existing is None:  # pragma: no cover - the conflicting row cannot vanish
            raise RuntimeError(f"usage record {record.request_id!r} conflicted but is missing")
        return Recorded(existing, duplicate=True)
