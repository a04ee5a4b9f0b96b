"""Which cached image may answer a request, and what serving it saves. Plain Python.

- Exact: the same model, size, quality and prompt (cache_key: the SHA-256 of
  a canonical JSON of the four, so a small low-quality image is never served
  for a large or better one).
- Similar, only when the caller allows it and the prompt was built by the
  service: the same model and size, the same or a better quality, the same
  dish (similarity.same_dish), and a score of at least the threshold the
  caller may tighten. The best score wins; then the entry of the nearest
  quality, then the newest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from services.image.domain.images import StoredImage
from services.image.recipes.analyzer import RecipeContext
from services.image.recipes.prompts import normalize_prompt
from services.image.recipes.similarity import score

# Ordered qualities: a higher rank is a better (and dearer) image. DALL-E's
# "standard" and "hd" are the GPT models' "medium" and "high". An unknown
# quality has rank 0 and is served only by the exact cache.
QUALITY_RANKS = {"low": 1, "medium": 2, "standard": 2, "high": 3, "hd": 3, "xhigh": 4, "max": 5}
# Similar candidates read for one lookup, newest first: a bound on the work of
# a lookup however many images of one dish the cache holds.
MAX_SIMILAR_CANDIDATES = 50


def cache_key(model: str, size: str, quality: str, prompt: str) -> str:
    canonical = json.dumps(
        {
            "model": model.strip().lower(),
            "prompt": normalize_prompt(prompt),
            "quality": quality.strip().lower(),
            "size": size.strip().lower(),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Lookup:
    """What one request looks for in the cache."""

    key: str
    # None: no similar lookup (not allowed, a caller's prompt, or an unknown dish).
    match_key: str | None
    context: RecipeContext
    quality: str
    quality_rank: int
    threshold: float
    # What the request would be charged without usage: the price table's figure.
    requested_micros: int

    def exact_only(self) -> Lookup:
        return replace(self, match_key=None)


@dataclass(frozen=True)
class Hit:
    """A cached image that answers a request."""

    entry_id: int
    image: StoredImage
    similar: bool
    similarity: float
    saved_micros: int


@dataclass(frozen=True)
class HitDelta:
    """An entry's hits not yet written to it: how many of each kind, what they
    saved, and when the last one was."""

    entry_id: int
    exact: int = 0
    similar: int = 0
    saved_micros: int = 0
    last_hit_at: datetime | None = None

    def plus(self, hit: Hit, now: datetime) -> HitDelta:
        return replace(
            self,
            exact=self.exact + (0 if hit.similar else 1),
            similar=self.similar + (1 if hit.similar else 0),
            saved_micros=self.saved_micros + hit.saved_micros,
            last_hit_at=max(now, self.last_hit_at) if self.last_hit_at else now,
        )

    def merged(self, other: HitDelta | None) -> HitDelta:
        if other is None:
            return self
        last = [t for t in (self.last_hit_at, other.last_hit_at) if t is not None]
        return replace(
            self,
            exact=self.exact + other.exact,
            similar=self.similar + other.similar,
            saved_micros=self.saved_micros + other.saved_micros,
            last_hit_at=max(last) if last else None,
        )

    @property
    def uses(self) -> int:
        return self.exact + self.similar


@dataclass(frozen=True)
class CacheStats:
    entries: int
    exact_hits: int
    similar_hits: int
    misses: int
    total_cost_saved_micros: int

    @property
    def lookups(self) -> int:
        return self.exact_hits + self.similar_hits + self.misses

    def _rate(self, hits: int) -> float:
        return hits / self.lookups if self.lookups else 0.0

    @property
    def hit_rate(self) -> float:
        return self._rate(self.exact_hits + self.similar_hits)

    @property
    def exact_hit_rate(self) -> float:
        return self._rate(self.exact_hits)

    @property
    def similar_hit_rate(self) -> float:
        return self._rate(self.similar_hits)


def quality_rank(quality: str) -> int:
    return QUALITY_RANKS.get(quality.strip().lower(), 0)


def serves_quality(cached_rank: int, requested_rank: int) -> bool:
    """A cached image serves a request of its own quality or a lower one."""
    return requested_rank > 0 and cached_rank >= requested_rank


def cost_saved(
    cached_quality: str, cached_cost_micros: int, requested_quality: str, requested_micros: int
) -> int:
    """What serving the cached image saves: its own cost when it is of the
    requested quality (the same request made again), otherwise what the request
    would have been charged (the price table's figure for it)."""
    if cached_quality == requested_quality:
        return cached_cost_micros
    return requested_micros


@dataclass(frozen=True)
class Candidate:
    """A similar-cache candidate as the repository read it."""

    entry_id: int
    quality_rank: int
    context: RecipeContext
    created_order: int  # larger is newer


@dataclass(frozen=True)
class Choice:
    entry_id: int
    similarity: float


def best_similar(
    candidates: Iterable[Candidate],
    context: RecipeContext,
    requested_rank: int,
    threshold: float,
) -> Choice | None:
    """The candidate to serve, or None when none is the same dish at the threshold."""
    best: tuple[float, int, int] | None = None
    chosen: Choice | None = None
    for candidate in candidates:
        if not serves_quality(candidate.quality_rank, requested_rank):
            continue
        similarity = score(context, candidate.context)
        if similarity <= 0.0 or similarity < threshold:
            continue
        order = (similarity, -(candidate.quality_rank - requested_rank), candidate.created_order)
        if best is None or order > best:
            best = order
            chosen = Choice(candidate.entry_id, similarity)
    return chosen
