"""A job run every interval in a daemon thread: the reaper, the cache purger
and the settlement retrier all have this shape.

A failure is logged and the next tick tries again: a database hiccup must not
end a job that keeps budgets and caches honest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class PeriodicJob:
    def __init__(
        self, name: str, interval_seconds: float, work: Callable[[], int], log: logging.Logger
    ) -> None:
        """work() returns how many things it handled; a non-zero count is logged."""
        self._name = name
        self._interval = interval_seconds
        self._work = work
        self._log = log
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run every interval (an interval of 0 means never)."""
        if self._interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
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
                handled = self._work()
            except Exception:
                self._log.exception("%s failed; retrying at the next tick", self._name)
                continue
            if handled:
                self._log.info("%s handled %d", self._name, handled, extra={"count": handled})
