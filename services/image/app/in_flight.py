"""Paid generations in flight, so shutdown can wait for them.

A generation holds money from its reservation to its commit; the provider may
take a minute or more. Shutdown must not close the provider client or the
BudgetService channel under one (the paid image would be recorded as a failed
attempt at cost 0), so the composition root waits here first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class InFlight:
    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    @property
    def count(self) -> int:
        with self._changed:
            return self._count

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count one generation for as long as the block runs."""
        with self._changed:
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def wait_until_idle(self, timeout_seconds: float) -> bool:
        """True once no generation is in flight; False when the timeout ran out first."""
        deadline = time.monotonic() + timeout_seconds
        with self._changed:
            while self._count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True
