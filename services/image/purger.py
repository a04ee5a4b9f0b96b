"""The cache purge job: a background thread that deletes expired and
invalidated cache entries every interval.

Safe to run in every replica at once: each batch is one transaction that
deletes rows by id, and a row already deleted by another replica is simply
not there.
"""

from __future__ import annotations

import logging
import threading

from services.image.generation import Images

log = logging.getLogger("recipeimage.image.purger")


class Purger:
    def __init__(self, images: Images, interval_seconds: float) -> None:
        self._images = images
        self._interval = interval_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def purge(self) -> int:
        return self._images.purge_expired()

    def start(self) -> None:
        """Purge every interval in a daemon thread (interval 0: never)."""
        if self._interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="image-cache-purger", daemon=True)
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
                purged = self.purge()
            except Exception:
                # A database hiccup must not end the job; the next tick retries.
                log.exception("purging expired cache entries failed")
                continue
            if purged:
                log.info("purged expired cache entries", extra={"count": purged})
