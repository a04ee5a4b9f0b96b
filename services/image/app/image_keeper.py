"""Keeping images: their rows in the database and the bytes in the image store.

One transaction: the image row is written (or taken back from the retention
job) first, then the bytes are stored, then the cache entry and the pending
commit of its cost. Other transactions see the row only once it commits, when
the bytes are there; and because the row is claimed before the bytes are
checked, the retention job can never delete bytes this transaction just found
in place (store/retention.py). The entry names the attempt (user, request id)
that paid for it. Bytes stored by a transaction that then failed are left for
nobody: harmless, and content addressing makes the next store of them a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.image.adapters.image_store import sha256_hex
from services.image.app.ports import ImageStorage
from services.image.app.settler import Settler
from services.image.domain.cache_policy import Hit, Lookup
from services.image.domain.images import GeneratedImage, StoredImage
from services.image.domain.settlement import Settlement
from services.image.recipes.similarity import match_key
from services.image.store.cache import CacheRepository

log = logging.getLogger("recipeimage.image.generation")


@dataclass(frozen=True)
class PaidImage:
    """The cache entry an attempt's generation stored, and that entry as an exact
    hit while it is live (None once it expired or was invalidated)."""

    cache_key: str
    hit: Hit | None


class ImageKeeper:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        files: ImageStorage,
        settler: Settler,
        clock: Clock,
        *,
        cache_ttl: timedelta,
        flush_hits: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.files = files
        self.settler = settler
        self.clock = clock
        self.cache_ttl = cache_ttl
        # Hit counts are written in batches: an expired entry this store
        # replaces keeps its hits in the totals only once they are written.
        self.flush_hits = flush_hits

    def store_image(self, data: bytes, content_type: str, *, pinned: bool = False) -> StoredImage:
        """Store bytes and their image row (the same bytes twice keep their first
        row); a pinned image (the fallback) is never deleted by retention."""
        with self.sessions.begin() as session:
            repo = CacheRepository(session)
            image_id = self._store_bytes(repo, data, content_type, pinned=pinned)
            image = repo.image(image_id)
            assert image is not None
            return image

    def store_generated_image(
        self,
        generated: GeneratedImage,
        lookup: Lookup,
        built_prompt: bool,
        commit: Settlement,
    ) -> tuple[StoredImage, Settlement]:
        """Store the bytes, then the image row, the cache entry and the pending
        commit of its cost (one transaction); the image and the queued commit.

        When another request stored an entry for the same key first (its lease
        expired while it generated), this one keeps its own image (it was paid
        for and is readable) and leaves the winner's entry.
        """
        # Hit counts are written in batches: write them before this entry may
        # replace an expired one, so its hits reach the totals.
        self.flush_hits()
        now = self.clock.now()
        with self.sessions.begin() as session:
            repo = CacheRepository(session)
            image_id = self._store_bytes(repo, generated.data, generated.content_type)
            commit = replace(commit, usage=replace(commit.usage, image_id=image_id))
            usage = commit.usage
            _entry, won = repo.add_entry(
                {
                    "cache_key": lookup.key,
                    "model": usage.model,
                    "size": usage.size,
                    "quality": usage.quality,
                    "quality_rank": lookup.quality_rank,
                    "prompt": usage.prompt,
                    "context": lookup.context.to_json(),
                    # Only a built prompt shows the dish its context says; a
                    # caller's prompt may show anything, so it is never reused.
                    "match_key": (
                        match_key(usage.model, usage.size, lookup.context) if built_prompt else None
                    ),
                    "image_id": image_id,
                    "provider": generated.provider,
                    "cost_micros": commit.actual_cost_micros,
                    "created_at": now,
                    "expires_at": now + self.cache_ttl,
                    "created_by_user_id": usage.user_id,
                    "created_by_request_id": usage.request_id,
                },
                now,
            )
            image = repo.image(image_id)
            assert image is not None
            if not won:
                log.info("cache entry raced; kept the first", extra={"cache_key": lookup.key})
            return image, self.settler.queue(session, commit)

    def _store_bytes(
        self, repo: CacheRepository, data: bytes, content_type: str, *, pinned: bool = False
    ) -> str:
        """Claim the image row, then store the bytes (a no-op when they are in
        place); the image id. Raises OSError when the store fails."""
        image_id = sha256_hex(data)
        repo.add_image(image_id, content_type, len(data), self.clock.now(), pinned=pinned)
        stored = self.files.put(data, content_type)
        assert stored == image_id
        return image_id

    def image_paid_by(self, user_id: str, request_id: str) -> PaidImage | None:
        """The image attempt (user_id, request_id) generated and cached; None when
        it cached none (it generated nothing, or another attempt's entry won)."""
        now = self.clock.now()
        with self.sessions.begin() as session:
            repo = CacheRepository(session)
            entry = repo.created_by(user_id, request_id)
            if entry is None:
                return None
            live = entry.expires_at > now
            hit = Hit(entry.id, repo.image_of(entry), False, 1.0, entry.cost_micros)
            return PaidImage(entry.cache_key, hit if live else None)
