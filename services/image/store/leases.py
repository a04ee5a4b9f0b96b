"""Generation leases (single flight): one row per cache key being generated,
claimed with one INSERT ... ON CONFLICT, so two replicas cannot both win, and
renewed by its owner's heartbeat with one conditional UPDATE. The repository
works in the session it is given."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import delete, or_, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from services.common.db import dialect_name, insert_for
from services.image.store.models import GenerationLease


class LeaseRepository:
    """Generation leases: one row per cache key being generated (single flight)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def claim(self, key: str, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Take the lease on key for owner: True when it was free, expired, or
        already owner's. One statement, so two replicas cannot both win."""
        statement = insert_for(dialect_name(self.session), GenerationLease).values(
            cache_key=key, owner=owner, acquired_at=now, expires_at=now + ttl
        )
        claim = statement.on_conflict_do_update(
            index_elements=["cache_key"],
            set_={
                "owner": statement.excluded.owner,
                "acquired_at": statement.excluded.acquired_at,
                "expires_at": statement.excluded.expires_at,
            },
            where=or_(GenerationLease.expires_at <= now, GenerationLease.owner == owner),
        ).returning(GenerationLease.owner)
        return self.session.execute(claim).scalar_one_or_none() == owner

    def renew(self, key: str, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Extend owner's lease on key to now + ttl: True when owner still held it.
        One UPDATE matching the owner, so a lease lost to another is never extended."""
        # An UPDATE's result is a CursorResult (it has rowcount); execute() is typed wider.
        result = cast(
            CursorResult[Any],
            self.session.execute(
                update(GenerationLease)
                .where(GenerationLease.cache_key == key, GenerationLease.owner == owner)
                .values(expires_at=now + ttl)
            ),
        )
        return result.rowcount == 1

    def release(self, key: str, owner: str) -> None:
        self.session.execute(
            delete(GenerationLease).where(
                GenerationLease.cache_key == key, GenerationLease.owner == owner
            )
        )

    def held_by_another(self, key: str, owner: str, now: datetime) -> bool:
        lease = self.session.get(GenerationLease, key, populate_existing=True)
        return lease is not None and lease.owner != owner and lease.expires_at > now
