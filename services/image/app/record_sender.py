"""The cache hits' usage records on their way to BudgetService: a hit's row is
written to the settlement outbox before the hit is answered, then handed to
this sender, whose one thread sends what has gathered in one RecordUsageBatch
(a hit never waits on BudgetService). What the sender could not deliver, or
never got to (the process died), the settler sends once the row's claim
period is over, from any replica; a record sent twice is written once."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable

from services.image.domain.settlement import Settlement

log = logging.getLogger("recipeimage.image.settlement")

# The most records one RecordUsageBatch carries (BudgetService takes 500).
MAX_BATCH = 200

Deliver = Callable[[list[Settlement]], object]

# (user_id, request_id) of the hits this process recorded, kept to know a
# retry that arrives before its first attempt's record reached BudgetService.
RECENT_KEYS = 100_000


class RecentKeys:
    """A bounded set, oldest forgotten first (by then BudgetService has the
    record, and Admit tells)."""

    def __init__(self, max_keys: int = RECENT_KEYS) -> None:
        self._max = max_keys
        self._keys: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, key: tuple[str, str]) -> bool:
        with self._lock:
            return key in self._keys

    def add(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._keys[key] = None
            while len(self._keys) > self._max:
                self._keys.popitem(last=False)


class RecordSender:
    """One daemon thread, started with the first record; flush() and stop()
    wait until every record handed to it has been sent (or left to the settler)."""

    def __init__(self, deliver: Deliver, max_batch: int = MAX_BATCH) -> None:
        self._deliver = deliver
        self._max_batch = max_batch
        self._queue: deque[Settlement] = deque()
        self._ready = threading.Condition()
        self._sending = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def submit(self, settlement: Settlement) -> None:
        with self._ready:
            if self._stopping:
                return  # its row waits for the settler
            self._queue.append(settlement)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="image-record-sender", daemon=True
                )
                self._thread.start()
            self._ready.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far has been sent; False on timeout."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._queue and not self._sending, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is queued (the drain), then end the thread."""
        self.flush(timeout)
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._queue or self._stopping)
                if not self._queue:
                    return
                batch = [
                    self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))
                ]
                self._sending = len(batch)
            try:
                self._deliver(batch)
            except Exception:  # the rows stay in the outbox for the settler
                log.exception("sending usage records failed", extra={"records": len(batch)})
            finally:
                with self._ready:
                    self._sending = 0
                    self._ready.notify_all()
