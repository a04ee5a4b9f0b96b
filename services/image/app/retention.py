"""Image retention: bytes nothing refers to any more (no cache entry, no
settlement outbox row, not the fallback) are deleted once they have been
unreferenced for the grace period. A periodic job in every replica runs it;
store/retention.py says why two replicas, or a replica and a request storing
the same image again, never delete bytes still served.

The grace period is what lets a caller still fetch an image it was just
answered with (an image whose cache entry lost a race, or one just purged).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.image.app.ports import ImageStorage
from services.image.store.retention import SWEEP_BATCH, RetentionRepository

log = logging.getLogger("recipeimage.image.retention")


class ImageRetention:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        files: ImageStorage,
        clock: Clock,
        *,
        grace: timedelta,
        batch: int = SWEEP_BATCH,
    ) -> None:
        self.sessions = sessions
        self.files = files
        self.clock = clock
        self.grace = grace
        self.batch = batch

    def run(self) -> int:
        """Mark what became unreferenced, then delete what stayed so for the
        grace period; how many images it deleted."""
        self.mark()
        deleted = 0
        while True:
            count = self.sweep_once()
            deleted += count
            if count < self.batch:
                return deleted

    def mark(self) -> int:
        with self.sessions.begin() as session:
            repo = RetentionRepository(session)
            repo.unmark_referenced()
            return repo.mark_unreferenced(self.clock.now())

    def sweep_once(self) -> int:
        """One batch: the rows deleted and their bytes removed in one
        transaction (a failed byte delete rolls the rows back for the next run)."""
        cutoff = self.clock.now() - self.grace
        with self.sessions.begin() as session:
            doomed = RetentionRepository(session).delete_expired(cutoff, self.batch)
            for image_id, content_type in doomed:
                self.files.delete(image_id, content_type)
        for image_id, _ in doomed:
            log.info("unreferenced image deleted", extra={"image_id": image_id})
        return len(doomed)
