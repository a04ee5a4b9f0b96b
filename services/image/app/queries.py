"""The read-only queries: GetImage (metadata and bytes, in one message when
they fit the maximum message size), StreamImage (the same, in chunks) and
GetCacheStats (lifetime figures and a page of the most used live entries)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from sqlalchemy.orm import Session, sessionmaker

from services.common import paging
from services.common.clock import Clock
from services.common.errors import FailedPrecondition, NotFound, Violations
from services.common.paging import PageTokens
from services.image.adapters.image_store import CorruptImageError
from services.image.app.ports import ImageStorage
from services.image.domain.images import StoredImage, check_image_id, store_unavailable
from services.image.domain.results import CachedEntry, CacheStatsPage
from services.image.store.cache import CacheRepository
from services.image.store.models import CacheEntry

log = logging.getLogger("recipeimage.image.queries")

# GetCacheStats' most-used entries (AIP-158): a page of 10 unless asked, 100 at most.
STATS_PAGE_SIZE = 10
MAX_STATS_PAGE_SIZE = 100
# StreamImage's chunk: well under any sane message limit, large enough that a
# 20 MB image is a few hundred messages.
STREAM_CHUNK_BYTES = 64 * 1024
# Room in a GetImage message for everything but the bytes (the Image metadata
# and the field tags): far more than they take.
MESSAGE_OVERHEAD_BYTES = 4096


class ImageQueries:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        files: ImageStorage,
        page_tokens: PageTokens,
        clock: Clock,
        *,
        max_message_bytes: int = 32 * 1024 * 1024,
        flush_hits: Callable[[], None] = lambda: None,
    ) -> None:
        self.sessions = sessions
        self.files = files
        self.page_tokens = page_tokens
        self.clock = clock
        self.max_message_bytes = max_message_bytes
        # This replica's hit counts not yet written (app/hit_counts.py).
        self.flush_hits = flush_hits

    def get_image(self, image_id: str) -> tuple[StoredImage, bytes]:
        """The image's metadata and bytes, for one message; NotFound when no image
        has the id, FailedPrecondition when it would not fit in one message."""
        image = self._image_row(image_id)
        if image.size_bytes + MESSAGE_OVERHEAD_BYTES > self.max_message_bytes:
            raise FailedPrecondition(
                f"image {image_id} is {image.size_bytes} bytes, more than one message may "
                f"carry ({self.max_message_bytes} bytes); read it with StreamImage",
                "IMAGE_TOO_LARGE",
                {
                    "size_bytes": str(image.size_bytes),
                    "max_message_bytes": str(self.max_message_bytes),
                    "use": "StreamImage",
                },
            )
        return image, self._bytes_of(image)

    def stream_image(self, image_id: str) -> tuple[StoredImage, Iterator[tuple[int, bytes]]]:
        """The image's metadata and its bytes as (offset, chunk) pairs; the bytes
        are read (and checked) before the first chunk, so a lost image is
        NotFound before anything is sent."""
        image = self._image_row(image_id)
        data = self._bytes_of(image)
        chunks = (
            (offset, data[offset : offset + STREAM_CHUNK_BYTES])
            for offset in range(0, max(len(data), 1), STREAM_CHUNK_BYTES)
        )
        return image, chunks

    def _image_row(self, image_id: str) -> StoredImage:
        check_image_id(image_id)
        with self.sessions.begin() as session:
            image = CacheRepository(session).image(image_id)
        if image is None:
            raise NotFound(f"no image {image_id}")
        return image

    def _bytes_of(self, image: StoredImage) -> bytes:
        image_id = image.image_id
        try:
            return self.files.get(image.image_id, image.content_type)
        except (FileNotFoundError, CorruptImageError):
            self._stop_serving_lost_image(image_id)
            raise NotFound(f"image {image_id} is no longer stored") from None
        except OSError as error:  # the store is down: the bytes are not known to be lost
            log.warning("the image store failed a read", extra={"error": str(error)})
            raise store_unavailable("the image store could not be reached; retry") from None

    def _stop_serving_lost_image(self, image_id: str) -> None:
        """The bytes are gone or damaged: no cache entry may hand the id out again,
        so the next request for the recipe generates a new image."""
        with self.sessions.begin() as session:
            entries = CacheRepository(session).invalidate_image(image_id, self.clock.now())
        log.error(
            "a stored image is missing or damaged", extra={"image_id": image_id, "entries": entries}
        )

    def cache_stats(self, page_size: int = 0, page_token: str = "") -> CacheStatsPage:
        violations = Violations()
        size = paging.page_size(
            violations, page_size, default=STATS_PAGE_SIZE, maximum=MAX_STATS_PAGE_SIZE
        )
        after = self._position(violations, page_token)
        violations.raise_if_any()
        self.flush_hits()
        now = self.clock.now()
        with self.sessions.begin() as session:
            repo = CacheRepository(session)
            stats = repo.stats(now)
            rows = repo.most_used(now, size + 1, after)
            page, more = rows[:size], len(rows) > size
            images = repo.images_of(page)
            listed = [_listed(row, images[row.image_id]) for row in page]
        token = ""
        if more and page:
            token = self.page_tokens.encode({"u": page[-1].uses, "i": page[-1].id}, {})
        return CacheStatsPage(stats, listed, token)

    def _position(self, violations: Violations, page_token: str) -> tuple[int, int] | None:
        """The (uses, id) of the last entry of the previous page, from its token."""
        position = self.page_tokens.decode(violations, page_token, {})
        if position is None:
            return None
        uses, entry_id = position.get("u"), position.get("i")
        if isinstance(uses, int) and isinstance(entry_id, int):
            return uses, entry_id
        violations.add("page_token", "not a page token this service issued")
        return None


def _listed(row: CacheEntry, image: StoredImage) -> CachedEntry:
    return CachedEntry(
        entry_id=row.id,
        image=image,
        model=row.model,
        size=row.size,
        quality=row.quality,
        dish=str((row.context or {}).get("dish", "")),
        uses=row.uses,
        exact_hits=row.exact_hits,
        similar_hits=row.similar_hits,
        cost_micros=row.cost_micros,
        cost_saved_micros=row.cost_saved_micros,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_hit_at=row.last_hit_at,
    )
