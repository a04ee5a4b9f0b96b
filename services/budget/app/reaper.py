"""The TTL reaper: expires reservations nobody committed or released in time,
gives their money back, so budget is never stuck behind a crashed caller, and
records each as an abandoned attempt (a late commit or release amends it).

Runs in a background thread (interval 0: never) and on demand. Safe in every
replica at once: each expiry is one conditional UPDATE only one of them wins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from services.budget.domain.limits import held_window_keys
from services.budget.domain.reservations import Reservation, Settlement
from services.budget.domain.usage import Outcome, Usage, completed
from services.budget.store.unit_of_work import BudgetStore
from services.common.clock import Clock
from services.common.periodic import PeriodicJob

log = logging.getLogger("recipeimage.budget.reaper")

REAP_BATCH = 100


class Reaper:
    def __init__(
        self,
        store: BudgetStore,
        clock: Clock,
        interval_seconds: float,
        count_expired: Callable[[float], None] = lambda _: None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._count_expired = count_expired
        self._job = PeriodicJob("budget-reaper", interval_seconds, self.reap_expired, log)

    def reap_expired(self, now: datetime | None = None, batch: int = REAP_BATCH) -> int:
        """Expire what is due at now (default: the clock's now); returns how
        many. One short transaction per reservation."""
        now = now or self._clock.now()
        expired = 0
        while True:
            with self._store.transaction() as tx:
                due = tx.reservations.load_due_ids(now, batch)
            reaped = sum(self._expire(reservation_id, now) for reservation_id in due)
            if reaped:
                self._count_expired(reaped)
            expired += reaped
            if len(due) < batch:
                return expired

    def _expire(self, reservation_id: str, now: datetime) -> bool:
        with self._store.transaction() as tx:
            reservation = tx.reservations.expire_if_held(reservation_id, now)
            if reservation is None:
                return False  # committed, released or reaped elsewhere meanwhile
            # The attempt leaves its record now, not only when someone retries it;
            # the ledger before the windows, the lock order of every use case.
            tx.usage.store_usage(abandoned_attempt(reservation, now))
            tx.windows.settle(
                held_window_keys(
                    reservation.user_id, reservation.day_start, reservation.month_start
                ),
                Settlement(reservation.amount_micros, 0),
                now,
            )
        log.info(
            "reservation expired",
            extra={
                "reservation_id": reservation.id,
                "user_id": reservation.user_id,
                "amount_micros": reservation.amount_micros,
            },
        )
        return True

    def start(self) -> None:
        """Run reap_expired every interval in a daemon thread (interval 0: never)."""
        self._job.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._job.stop(timeout)

    @property
    def running(self) -> bool:
        return self._job.running


def abandoned_attempt(reservation: Reservation, now: datetime) -> Usage:
    """The ledger's record of an attempt whose reservation expired unsettled."""
    return completed(
        Usage(
            error_message="the reservation expired before the attempt was settled; "
            "its money was given back",
        ),
        default_outcome=Outcome.ABANDONED,
        created_at=now,
        request_id=reservation.idempotency_key,
        user_id=reservation.user_id,
        reservation_id=reservation.id,
        cost_micros=0,
    )
