"""The cache hit's hot statements, built once with bind parameters (Core, no
ORM): the exact entry with its image in one query, a dish's candidates with
their images in one query, and a batch of hit counts in one executemany.
Each runs on the connection it is given; the caller owns it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select, update

from services.image.domain.cache_policy import MAX_SIMILAR_CANDIDATES, HitDelta
from services.image.domain.images import StoredImage
from services.image.store.models import CacheEntry, CacheTotals, ImageRow

_ENTRIES = cast(Table, CacheEntry.__table__)
_IMAGE_COLUMNS = (
    ImageRow.image_id,
    ImageRow.content_type,
    ImageRow.size_bytes,
    ImageRow.created_at,
)

_EXACT = (
    select(CacheEntry.id, CacheEntry.cost_micros, *_IMAGE_COLUMNS)
    .join(ImageRow, ImageRow.image_id == CacheEntry.image_id)
    .where(
        CacheEntry.cache_key == bindparam("key"),
        CacheEntry.expires_at > bindparam("now"),
    )
)

_CANDIDATES = (
    select(
        CacheEntry.id,
        CacheEntry.quality,
        CacheEntry.quality_rank,
        CacheEntry.cost_micros,
        CacheEntry.context,
        CacheEntry.created_at.label("entry_created_at"),
        *_IMAGE_COLUMNS,
    )
    .join(ImageRow, ImageRow.image_id == CacheEntry.image_id)
    .where(
        CacheEntry.match_key == bindparam("match_key"),
        CacheEntry.expires_at > bindparam("now"),
        CacheEntry.quality_rank >= bindparam("min_rank"),
    )
    .order_by(CacheEntry.expires_at.desc(), CacheEntry.id.desc())
    .limit(MAX_SIMILAR_CANDIDATES)
)

_COUNT_HITS = (
    update(_ENTRIES)
    .where(_ENTRIES.c.id == bindparam("b_id"))
    .values(
        exact_hits=_ENTRIES.c.exact_hits + bindparam("b_exact"),
        similar_hits=_ENTRIES.c.similar_hits + bindparam("b_similar"),
        uses=_ENTRIES.c.uses + bindparam("b_uses"),
        cost_saved_micros=_ENTRIES.c.cost_saved_micros + bindparam("b_saved"),
        last_hit_at=bindparam("b_last"),
    )
    .returning(_ENTRIES.c.id)
)


_ADD_HITS_TO_TOTALS = (
    update(CacheTotals)
    .where(CacheTotals.id == 1)
    .values(
        exact_hits=CacheTotals.exact_hits + bindparam("t_exact"),
        similar_hits=CacheTotals.similar_hits + bindparam("t_similar"),
        cost_saved_micros=CacheTotals.cost_saved_micros + bindparam("t_saved"),
    )
)


@dataclass(frozen=True)
class LiveEntry:
    """A live entry as a hit needs it: its id, cost and image."""

    entry_id: int
    cost_micros: int
    image: StoredImage


@dataclass(frozen=True)
class CandidateEntry:
    entry_id: int
    quality: str
    quality_rank: int
    cost_micros: int
    context: dict[str, Any]
    image: StoredImage
    # With the id, names the entry for good (SQLite may reuse a deleted id).
    created_at: datetime


def _image(row: Any) -> StoredImage:
    return StoredImage(row.image_id, row.content_type, row.size_bytes, row.created_at)


def find_live_entry(connection: Connection, key: str, now: datetime) -> LiveEntry | None:
    """The live entry of the key with its image: one indexed read."""
    row = connection.execute(_EXACT, {"key": key, "now": now}).first()
    return LiveEntry(row.id, row.cost_micros, _image(row)) if row is not None else None


def similar_candidates(
    connection: Connection, match_key: str, min_quality_rank: int, now: datetime
) -> list[CandidateEntry]:
    """Live entries under match_key of at least the rank, newest first, with
    their images: one range of ix_cache_entries_match_key."""
    rows = connection.execute(
        _CANDIDATES, {"match_key": match_key, "now": now, "min_rank": min_quality_rank}
    )
    return [
        CandidateEntry(
            row.id,
            row.quality,
            row.quality_rank,
            row.cost_micros,
            row.context,
            _image(row),
            row.entry_created_at,
        )
        for row in rows
    ]


def count_hits(connection: Connection, deltas: list[HitDelta]) -> None:
    """Add each delta to its entry, and what reached an entry to the
    lifetime totals (an entry purged meanwhile takes none: its counts were
    final when it was purged)."""
    counted = [
        delta
        for delta in deltas
        if connection.execute(
            _COUNT_HITS,
            {
                "b_id": delta.entry_id,
                "b_exact": delta.exact,
                "b_similar": delta.similar,
                "b_uses": delta.uses,
                "b_saved": delta.saved_micros,
                "b_last": delta.last_hit_at,
            },
        ).first()
        is not None
    ]
    if counted:
        connection.execute(
            _ADD_HITS_TO_TOTALS,
            {
                "t_exact": sum(delta.exact for delta in counted),
                "t_similar": sum(delta.similar for delta in counted),
                "t_saved": sum(delta.saved_micros for delta in counted),
            },
        )
