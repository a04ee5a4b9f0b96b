"""Generation slots: how many GenerateImage calls of one replica may be past
the cache at once (generating, or waiting for an identical generation).

Such a call holds its RPC thread for as long as the provider takes, a minute
or more when it is slow. The slots are fewer than the server's threads, so the
threads left over always answer cache hits and every other RPC: a hit never
takes a slot and never waits behind generations. A miss that finds every slot
taken is shed at once, before any money is held (RESOURCE_EXHAUSTED with
reason GENERATION_SLOTS_EXHAUSTED and RetryInfo): nothing is reserved, charged
or recorded, as when the server's maximum_concurrent_rpcs sheds a call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from services.common.config import ConfigError
from services.common.errors import QuotaExceeded

SLOTS_EXHAUSTED = "GENERATION_SLOTS_EXHAUSTED"
# A slot frees when a generation ends: seconds, usually.
RETRY_AFTER = timedelta(seconds=1)


class GenerationSlots:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a replica needs at least one generation slot")
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    @contextmanager
    def held(self) -> Iterator[None]:
        """One slot for as long as the block runs; QuotaExceeded when none is free."""
        if not self._free.acquire(blocking=False):
            raise QuotaExceeded(
                f"this replica is already generating {self.limit} images; retry shortly",
                reason=SLOTS_EXHAUSTED,
                subject="image_service:generations",
                retry_after=RETRY_AFTER,
                metadata={"limit": str(self.limit)},
            )
        try:
            yield
        finally:
            self._free.release()


def generation_slots(configured: int, max_workers: int) -> int:
    """The slots a replica has: the configured number, or by default three
    quarters of its RPC threads; always fewer than the threads, so at least
    one is left for cache hits."""
    slots = configured or max(1, max_workers * 3 // 4)
    if max_workers > 1 and slots >= max_workers:
        raise ConfigError(
            f"{slots} generation slots leave none of the {max_workers} RPC threads for cache "
            "hits; set RECIPEIMAGE_IMAGE_MAX_CONCURRENT_GENERATIONS below "
            "RECIPEIMAGE_IMAGE_MAX_WORKERS"
        )
    return slots
