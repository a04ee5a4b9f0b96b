"""What the use cases answer, as plain values: a GenerateImage result and the
cache's entries and statistics as GetCacheStats lists them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from services.image.domain.accounting import Usage
from services.image.domain.cache_policy import CacheStats
from services.image.domain.degradation import Degraded
from services.image.domain.images import StoredImage
from services.image.recipes.analyzer import RecipeContext


class Source(enum.StrEnum):
    GENERATED = "generated"
    CACHE_EXACT = "cache_exact"
    CACHE_SIMILAR = "cache_similar"
    FALLBACK = "fallback"

    @property
    def cached(self) -> bool:
        return self in (Source.CACHE_EXACT, Source.CACHE_SIMILAR)


@dataclass(frozen=True)
class GenerateResult:
    image: StoredImage
    source: Source
    cost_micros: int
    cost_saved_micros: int
    similarity: float
    prompt: str
    request_id: str
    model: str
    size: str
    quality: str
    generation_time_ms: int = 0
    context: RecipeContext | None = None
    fallback_reason: str = ""
    fallback_message: str = ""
    # Set when a degradation step other than the requested one was served.
    degraded: Degraded | None = None

    @classmethod
    def answering(
        cls,
        usage: Usage,
        context: RecipeContext,
        image: StoredImage,
        source: Source,
        *,
        cost_micros: int = 0,
        cost_saved_micros: int = 0,
        similarity: float = 0.0,
        generation_time_ms: int = 0,
        fallback_reason: str = "",
        fallback_message: str = "",
    ) -> GenerateResult:
        """The answer to the attempt `usage` records: its prompt, request id and options."""
        return cls(
            image=image,
            source=source,
            cost_micros=cost_micros,
            cost_saved_micros=cost_saved_micros,
            similarity=similarity,
            prompt=usage.prompt,
            request_id=usage.request_id,
            model=usage.model,
            size=usage.size,
            quality=usage.quality,
            generation_time_ms=generation_time_ms,
            context=context,
            fallback_reason=fallback_reason,
            fallback_message=fallback_message,
        )


@dataclass(frozen=True)
class CachedEntry:
    """One cache entry as GetCacheStats lists it."""

    entry_id: int
    image: StoredImage
    model: str
    size: str
    quality: str
    dish: str
    uses: int
    exact_hits: int
    similar_hits: int
    cost_micros: int
    cost_saved_micros: int
    created_at: datetime
    expires_at: datetime
    last_hit_at: datetime | None


@dataclass(frozen=True)
class CacheStatsPage:
    stats: CacheStats
    most_used: list[CachedEntry]
    next_page_token: str
