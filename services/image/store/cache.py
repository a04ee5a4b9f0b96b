"""The cache's tables: stored images, cache entries and the lifetime totals.

Similar-dish candidates are found through match_key (recipes.similarity.match_key),
an indexed column: a lookup reads one index range of at most
cache_policy.MAX_SIMILAR_CANDIDATES rows, never the table. The repository
works in the session it is given; the caller owns the transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from services.common.db import dialect_name, insert_for
from services.image.domain.cache_policy import MAX_SIMILAR_CANDIDATES, CacheStats
from services.image.domain.images import StoredImage
from services.image.store.models import CacheEntry, CacheTotals, ImageRow

PURGE_BATCH = 1000
TOTALS_ID = 1


def stored_image(row: ImageRow) -> StoredImage:
    return StoredImage(row.image_id, row.content_type, row.size_bytes, row.created_at)


def _live(now: datetime) -> ColumnElement[bool]:
    return CacheEntry.expires_at > now


class CacheRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- lookups

    def find_live(self, key: str, now: datetime) -> CacheEntry | None:
        return self.session.scalars(
            select(CacheEntry).where(CacheEntry.cache_key == key, _live(now))
        ).one_or_none()

    def created_by(self, user_id: str, request_id: str) -> CacheEntry | None:
        """The entry the generation of attempt (user_id, request_id) stored, live
        or not (one attempt generates at most once); None when it stored none."""
        return self.session.scalars(
            select(CacheEntry)
            .where(
                CacheEntry.created_by_user_id == user_id,
                CacheEntry.created_by_request_id == request_id,
            )
            .limit(1)
        ).one_or_none()

    def similar_candidates(
        self,
        match_key: str,
        min_quality_rank: int,
        now: datetime,
        limit: int = MAX_SIMILAR_CANDIDATES,
    ) -> list[CacheEntry]:
        """Live entries under match_key of at least the rank, newest first: one
        range of ix_cache_entries_match_key."""
        return list(
            self.session.scalars(
                select(CacheEntry)
                .where(
                    CacheEntry.match_key == match_key,
                    _live(now),
                    CacheEntry.quality_rank >= min_quality_rank,
                )
                .order_by(CacheEntry.expires_at.desc(), CacheEntry.id.desc())
                .limit(limit)
            )
        )

    def image(self, image_id: str) -> StoredImage | None:
        row = self.session.get(ImageRow, image_id)
        return stored_image(row) if row is not None else None

    def images_of(self, entries: list[CacheEntry]) -> dict[str, StoredImage]:
        """The images a page of entries holds, by id, in one query."""
        ids = {entry.image_id for entry in entries}
        if not ids:
            return {}
        rows = self.session.scalars(select(ImageRow).where(ImageRow.image_id.in_(ids)))
        return {row.image_id: stored_image(row) for row in rows}

    def image_of(self, entry: CacheEntry) -> StoredImage:
        """The image a cache entry holds (the foreign key guarantees there is one)."""
        image = self.image(entry.image_id)
        assert image is not None
        return image

    # -- counting uses

    def record_hit(self, entry_id: int, now: datetime, *, similar: bool, saved_micros: int) -> None:
        """One more use of the entry, saving saved_micros."""
        counter = CacheEntry.similar_hits if similar else CacheEntry.exact_hits
        self.session.execute(
            update(CacheEntry)
            .where(CacheEntry.id == entry_id)
            .values(
                {
                    counter: counter + 1,
                    CacheEntry.uses: CacheEntry.uses + 1,
                    CacheEntry.cost_saved_micros: CacheEntry.cost_saved_micros + saved_micros,
                    CacheEntry.last_hit_at: now,
                }
            )
        )

    # -- adding

    def add_image(
        self,
        image_id: str,
        content_type: str,
        size_bytes: int,
        now: datetime,
        *,
        pinned: bool = False,
    ) -> None:
        """Record an image about to be stored; the same bytes stored twice keep
        their first row. An existing row is taken back from the retention job
        (unreferenced_since cleared) and, on PostgreSQL, stays locked until the
        transaction ends, so the job cannot delete it meanwhile; a row the job
        is deleting right now is waited for and written anew (store/retention.py)."""
        statement = insert_for(dialect_name(self.session), ImageRow).values(
            image_id=image_id,
            content_type=content_type,
            size_bytes=size_bytes,
            created_at=now,
            unreferenced_since=None,
            pinned=pinned,
        )
        kept: dict[str, Any] = {"unreferenced_since": None}
        if pinned:
            kept["pinned"] = True
        self.session.execute(
            statement.on_conflict_do_update(index_elements=["image_id"], set_=kept)
        )

    def add_entry(self, values: dict[str, Any], now: datetime) -> tuple[CacheEntry, bool]:
        """Insert the entry for values["cache_key"]; (entry, True) when this call's entry won.

        The unique cache_key decides a race: the first insert wins and a later one
        gets the winner's entry back. An expired entry under the same key is
        purged first (its counts go to the totals): it describes an image nobody
        is served any more.
        """
        key = values["cache_key"]
        expired = self.session.scalars(
            select(CacheEntry.id).where(CacheEntry.cache_key == key, CacheEntry.expires_at <= now)
        ).all()
        if expired:
            self._purge_ids(list(expired))
        row = {
            **values,
            "exact_hits": 0,
            "similar_hits": 0,
            "uses": 0,
            "cost_saved_micros": 0,
            "last_hit_at": None,
            "invalidated_at": None,
        }
        statement = (
            insert_for(dialect_name(self.session), CacheEntry)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["cache_key"])
            .returning(CacheEntry.id)
        )
        won_id = self.session.execute(statement).scalar_one_or_none()
        if won_id is not None:
            self._add_to_totals(added=1)
            entry = self.session.get(CacheEntry, won_id, populate_existing=True)
            assert entry is not None
            return entry, True
        winner = self.find_live(key, now)
        if winner is None:  # cannot happen: the conflict was with a live entry
            raise RuntimeError(f"cache entry {key} vanished during insert")
        return winner, False

    # -- expiry and invalidation

    def purge_expired(self, now: datetime, batch: int = PURGE_BATCH) -> int:
        """Delete up to `batch` expired (or invalidated) entries, oldest expiry
        first, keeping their counts in the totals; returns how many."""
        ids = self.session.scalars(
            select(CacheEntry.id)
            .where(CacheEntry.expires_at <= now)
            .order_by(CacheEntry.expires_at)
            .limit(batch)
        ).all()
        return self._purge_ids(list(ids))

    def _purge_ids(self, ids: list[int]) -> int:
        if not ids:
            return 0
        # The totals hold every entry's hits already (migration 0007).
        removed = self.session.execute(
            delete(CacheEntry).where(CacheEntry.id.in_(ids)).returning(CacheEntry.id)
        ).all()
        if removed:
            self._add_to_totals(purged=len(removed))
        return len(removed)

    def _add_to_totals(self, *, purged: int = 0, added: int = 0) -> None:
        statement = insert_for(dialect_name(self.session), CacheTotals).values(
            id=TOTALS_ID,
            purged_entries=purged,
            exact_hits=0,
            similar_hits=0,
            cost_saved_micros=0,
            entries_added=added,
        )
        self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["id"],
                set_={
                    "purged_entries": CacheTotals.purged_entries + purged,
                    "entries_added": CacheTotals.entries_added + added,
                },
            )
        )

    def invalidate_image(self, image_id: str, now: datetime) -> int:
        """Expire every live entry holding the image; returns how many."""
        # An UPDATE's result is a CursorResult (it has rowcount); execute() is typed wider.
        result = cast(
            CursorResult[Any],
            self.session.execute(
                update(CacheEntry)
                .where(CacheEntry.image_id == image_id, _live(now))
                .values(expires_at=now, invalidated_at=now)
            ),
        )
        return int(result.rowcount or 0)

    # -- statistics

    def stats(self, now: datetime) -> CacheStats:
        """The totals row, less the entries expired and not purged yet: one
        row and a short range of the expiry index, never the whole table."""
        expired = func.count(CacheEntry.id)
        row = self.session.execute(
            select(
                CacheTotals.entries_added,
                CacheTotals.purged_entries,
                CacheTotals.exact_hits,
                CacheTotals.similar_hits,
                CacheTotals.cost_saved_micros,
                select(expired).where(CacheEntry.expires_at <= now).scalar_subquery(),
            ).where(CacheTotals.id == TOTALS_ID)
        ).first()
        if row is None:
            return CacheStats(0, 0, 0, 0, 0)
        added, purged, exact, similar, saved, unpurged = (int(value or 0) for value in row)
        return CacheStats(
            entries=added - purged - unpurged,
            misses=added,
            exact_hits=exact,
            similar_hits=similar,
            total_cost_saved_micros=saved,
        )

    def most_used(
        self, now: datetime, limit: int, after: tuple[int, int] | None = None
    ) -> list[CacheEntry]:
        """Live entries by uses, most first, ties oldest (lowest id) first;
        `after` is the (uses, id) of the last entry of the previous page."""
        query = select(CacheEntry).where(_live(now))
        if after is not None:
            uses, entry_id = after
            query = query.where(
                or_(
                    CacheEntry.uses < uses,
                    and_(CacheEntry.uses == uses, CacheEntry.id > entry_id),
                )
            )
        return list(
            self.session.scalars(
                query.order_by(CacheEntry.uses.desc(), CacheEntry.id.asc()).limit(limit)
            )
        )
