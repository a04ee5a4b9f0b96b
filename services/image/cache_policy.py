"""Which cached image may answer a request, and what serving it saves. Plain Python.

- Exact: the same model, size, quality and prompt (cache.cache_key).
- Similar, only when the caller allows it and the prompt was built by the
  service: the same model and size, the same or a better quality, the same
  dish (similarity.same_dish), and a score of at least the threshold the
  caller may tighten. The best score wins; then the entry of the nearest
  quality, then the newest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.image.analyzer import RecipeContext
from services.image.similarity import score

# Ordered qualities: a higher rank is a better (and dearer) image. DALL-E's
# "standard" and "hd" are the GPT models' "medium" and "high". An unknown
# quality has rank 0 and is served only by the exact cache.
QUALITY_RANKS = {"low": 1, "medium": 2, "standard": 2, "high": 3, "hd": 3, "xhigh": 4, "max": 5}
# Similar candidates read for one lookup, newest first: a bound on the work of
# a lookup however many images of one dish the cache holds.
MAX_SIMILAR_CANDIDATES = 50


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
