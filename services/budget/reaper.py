"""The TTL reaper: a background thread that expires reservations nobody
committed or released in time, so budget is never stuck behind a crashed caller.

Safe to run in every replica at once (see Reservations.expire_due).
"""

from __future__ import annotations

import logging
from datetime import datetime

from services.budget.reservations import Reservations
from services.common.clock import Clock
from services.common.periodic import PeriodicJob

log = logging.getLogger("recipeimage.budget.reaper")


class Reaper:
    def __init__(self, reservations: Reservations, clock: Clock, interval_seconds: float) -> None:
        self._reservations = reservations
        self._clock = clock
        self._job = PeriodicJob("budget-reaper", interval_seconds, self.reap_expired, log)

    def reap_expired(self, now: datetime | None = None) -> int:
        """Expire what is due at now (default: the clock's now); returns how many."""
        return self._reservations.expire_due(now or self._clock.now())

    def start(self) -> None:
        """Run reap_expired every interval in a daemon thread (interval 0: never)."""
        self._job.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._job.stop(timeout)

    @property
    def running(self) -> bool:
        return self._job.running
