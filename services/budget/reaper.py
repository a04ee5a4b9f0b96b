"""The TTL reaper: a background thread that expires reservations nobody
committed or released in time, so budget is never stuck behind a crashed caller.

Safe to run in every replica at once (see Reservations.expire_due).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from services.budget.reservations import Reservations
from services.common.clock import Clock

log = logging.getLogger("recipeimage.budget.reaper")


class Reaper:
    def __init__(self, reservations: Reservations, clock: Clock, interval_seconds: float) -> None:
        self._reservations = reservations
        self._clock = clock
        self._interval = interval_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def reap_expired(self, now: datetime | None = None) -> int:
        """Expire what is due at now (default: the clock's now); returns how many."""
        return self._reservations.expire_due(now or self._clock.now())

    def start(self) -> None:
        """Run reap_expired every interval in a daemon thread (interval 0: never)."""
        if self._interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="budget-reaper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                expired = self.reap_expired()
            except Exception:
                # A database hiccup must not end the reaper; the next tick retries.
                log.exception("reaping expired reservations failed")
                continue
            if expired:
                log.info("reaped expired reservations", extra={"count": expired})
