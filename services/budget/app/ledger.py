"""RecordUsage: an attempt that held no reservation (a cache hit, a refusal)
enters the append-only ledger, once per request_id."""

from __future__ import annotations

from services.budget.app.abuse import AbuseWatch
from services.budget.domain.usage import Outcome, Recorded, Usage, UsageKind, completed
from services.budget.domain.validation import Violations
from services.budget.store.unit_of_work import BudgetStore
from services.budget.store.usage import Key
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
                    # Raising rolls the insert back.
                    raise _has_reservation(record.request_id)
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
        batch sent twice, or by two senders at once, writes each record once;
        a key repeated in the batch answers as a duplicate of its first.

        One transaction of three statements whatever the batch's size (and
        one more per record that counts toward an abuse trigger: a failure, a
        generated dish recognition): the keys that hold a reservation, one
        multi-row insert of the others (its conflicts skipped), the records
        of the keys not written. A record is refused ATTEMPT_HAS_RESERVATION
        exactly when record() would be: its key holds a reservation and has
        no record. Probing before the insert races a concurrent ReserveBudget
        exactly as record()'s probe after its insert does (either way both
        may succeed only when each statement ran before the other's commit),
        and the settlement then keeps one record under the key (store_spend,
        store_attempt)."""
        if not records or len(records) > MAX_BATCH:
            raise InvalidArgument.field("usages", f"from 1 to {MAX_BATCH} records")
        results: list[Recorded | DomainError | None] = []
        valid: list[tuple[int, Key]] = []
        now = self._clock.now()
        firsts: dict[Key, Usage] = {}
        for user_id, usage, violations in records:
            try:
                _check_unreserved(violations, usage)
                violations.raise_if_any()
            except DomainError as error:
                results.append(error)
                continue
            key = (user_id, usage.request_id)
            valid.append((len(results), key))
            results.append(None)
            if key not in firsts:
                firsts[key] = completed(
                    usage, default_outcome=Outcome.FAILED, created_at=now, user_id=user_id
                )
        # In key order: two batches holding the same records lock them in one
        # order (the insert's rows, then the abuse rows), so they wait on each
        # other, never deadlock.
        keys = sorted(firsts)
        with self._store.transaction() as tx:
            reserved = tx.usage.reserved_keys(keys)
            written = tx.usage.store_usages([firsts[key] for key in keys if key not in reserved])
            existing = tx.usage.load_by_keys([key for key in keys if key not in written])
            for key in keys:
                if key in written:
                    self._abuse.after_record(tx, firsts[key], now)
        answered: set[Key] = set()
        for index, key in valid:
            if key in written:
                results[index] = Recorded(firsts[key], duplicate=key in answered)
                answered.add(key)
            elif key in existing:
                results[index] = Recorded(existing[key], duplicate=True)
            elif key in reserved:
                results[index] = _has_reservation(key[1])
            else:  # pragma: no cover - a conflicting row cannot vanish
                raise RuntimeError(f"usage record {key[1]!r} conflicted but is missing")
        return [result for result in results if result is not None]


def _has_reservation(request_id: str) -> FailedPrecondition:
    """The attempt held money: its record is written when that reservation is settled."""
    return FailedPrecondition(
        "this request_id has a reservation: commit or release it to record the attempt",
        ATTEMPT_HAS_RESERVATION,
        {"request_id": request_id},
    )
