"""The cache admin: purging expired and invalidated entries (the admin RPC and
the purge job main.py builds) and invalidating an image's entries."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.common.errors import NotFound
from services.image.domain.images import check_image_id
from services.image.store.cache import CacheRepository

log = logging.getLogger("recipeimage.image.generation")


class CacheAdmin:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        flush_hits: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.flush_hits = flush_hits

    def purge_expired(self) -> int:
        """Delete every expired or invalidated entry, a batch a transaction
        (after writing this replica's hit counts: a purged entry's counts go
        to the totals)."""
        self.flush_hits()
        purged = 0
        while True:
            with self.sessions.begin() as session:
                count = CacheRepository(session).purge_expired(self.clock.now())
            purged += count
            if count == 0:
                return purged

    def invalidate_image(self, image_id: str) -> int:
        """Expire every live entry holding the image; NotFound when none does."""
        check_image_id(image_id)
        with self.sessions.begin() as session:
            count = CacheRepository(session).invalidate_image(image_id, self.clock.now())
        if count == 0:
            raise NotFound(f"no live cache entry holds image {image_id}")
        log.info("cached image invalidated", extra={"image_id": image_id, "entries": count})
        return count
