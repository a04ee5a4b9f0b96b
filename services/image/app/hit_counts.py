"""Cache hits counted in memory and written to their entries in batches: a
hit's answer waits for no write of its counter. A flush (every second, before
GetCacheStats reads, and in the drain at shutdown) writes every entry's new
hits in one transaction. A process killed with SIGKILL loses at most the last
second's counts: statistics, never money (a hit's usage record goes through
the outbox; app/record_sender.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from services.image.domain.cache_policy import Hit, HitDelta

log = logging.getLogger("recipeimage.image.cache")

FLUSH_SECONDS = 1.0

Write = Callable[[list[HitDelta]], None]


class HitCounts:
    def __init__(self, write: Write, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._write = write
        self._flush_seconds = flush_seconds
        self._counts: dict[int, HitDelta] = {}
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, hit: Hit, now: datetime) -> None:
        with self._lock:
            known = self._counts.get(hit.entry_id)
            self._counts[hit.entry_id] = (known or HitDelta(hit.entry_id)).plus(hit, now)
            if self._thread is None and self._flush_seconds > 0:
                self._thread = threading.Thread(
                    target=self._run, name="image-hit-counts", daemon=True
                )
                self._thread.start()

    def flush(self) -> None:
        """Write every count gathered so far; on failure they are kept for the next flush."""
        with self._flushing:
            with self._lock:
                counts, self._counts = self._counts, {}
            if not counts:
                return
            try:
                self._write(list(counts.values()))
            except Exception:
                with self._lock:
                    for delta in counts.values():
                        known = self._counts.get(delta.entry_id)
                        self._counts[delta.entry_id] = delta.merged(known)
                raise

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._flush_seconds * 5)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            try:
                self.flush()
            except Exception:
                log.exception("writing cache hit counts failed; kept for the next flush")
