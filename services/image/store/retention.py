"""Image retention's SQL: marking images nothing refers to, and claiming the
ones unreferenced for longer than the grace period.

An image is referenced while a cache entry holds it (live or not yet purged),
while a settlement outbox row's usage names it (the response of an attempt
BudgetService has not acknowledged yet), or while it is pinned (the fallback).

Mark then sweep, safe in every replica at once:
- mark: images with no reference get unreferenced_since = now (those that
  already have one keep it); images referenced again lose it.
- sweep: images unreferenced since before now - grace, still unreferenced,
  are claimed (PostgreSQL: FOR UPDATE SKIP LOCKED, so two replicas never take
  the same row and neither waits) and deleted by a conditional DELETE that
  checks all of it again; the caller deletes their bytes before it commits.
- a writer (store.cache.add_image) upserts the image row before it looks at
  the bytes, clearing unreferenced_since. On PostgreSQL that upsert waits for
  a sweep holding the row and then writes a fresh row (and the bytes again,
  since they are gone), and a sweep meeting a row a writer holds skips it; on
  SQLite writers are serialized, and the DELETE's own conditions decide.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, not_, or_, select, update
from sqlalchemy.orm import Session

from services.image.store.models import CacheEntry, ImageRow, PendingSettlement

SWEEP_BATCH = 100


def _referenced() -> ColumnElement[bool]:
    held_by_entry = exists().where(CacheEntry.image_id == ImageRow.image_id)
    named_by_outbox = exists().where(
        PendingSettlement.usage["image_id"].as_string() == ImageRow.image_id
    )
    return or_(ImageRow.pinned.is_(True), held_by_entry, named_by_outbox)


def _deletable(cutoff: datetime) -> ColumnElement[bool]:
    return and_(ImageRow.unreferenced_since <= cutoff, not_(_referenced()))


class RetentionRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def mark_unreferenced(self, now: datetime) -> int:
        """Start the grace period of every image nothing refers to; how many."""
        result = self.session.execute(
            update(ImageRow)
            .where(ImageRow.unreferenced_since.is_(None), not_(_referenced()))
            .values(unreferenced_since=now)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def unmark_referenced(self) -> int:
        """End the grace period of every marked image referenced again; how many."""
        result = self.session.execute(
            update(ImageRow)
            .where(ImageRow.unreferenced_since.is_not(None), _referenced())
            .values(unreferenced_since=None)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def delete_expired(self, cutoff: datetime, limit: int = SWEEP_BATCH) -> list[tuple[str, str]]:
        """Delete up to `limit` image rows unreferenced since before cutoff that
        no other transaction holds; their (image_id, content_type). The rows
        stay locked until the transaction ends: delete the bytes before it does."""
        claimed = list(
            self.session.execute(
                select(ImageRow.image_id)
                .where(_deletable(cutoff))
                .order_by(ImageRow.unreferenced_since, ImageRow.image_id)
                .limit(limit)
                .with_for_update(skip_locked=True, of=ImageRow)
            ).scalars()
        )
        if not claimed:
            return []
        deleted = self.session.execute(
            delete(ImageRow)
            .where(ImageRow.image_id.in_(claimed), _deletable(cutoff))
            .returning(ImageRow.image_id, ImageRow.content_type)
            .execution_options(synchronize_session=False)
        ).all()
        return [(row.image_id, row.content_type) for row in deleted]

    def unreferenced_since(self, image_id: str) -> datetime | None:
        """When the image was found unreferenced (None: referenced, or no such row)."""
        return self.session.scalar(
            select(ImageRow.unreferenced_since).where(ImageRow.image_id == image_id)
        )
