"""The exact-match image cache: its key, and the repository over its tables.

The key is the SHA-256 of a canonical JSON of the four things that decide the
image: model, size, quality and prompt. Two requests share an entry only when
all four match, so a small low-quality image is never served for a large or
better one.

The repository works in the session it is given; the caller owns the
transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.image.models import CacheEntry, ImageRow

_WHITESPACE = re.compile(r"\s+")


def normalize_prompt(prompt: str) -> str:
    """NFC, single spaces, no leading or trailing whitespace: what is sent and what is keyed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", prompt)).strip()


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
class CacheStats:
    entries: int
    exact_hits: int
    similar_hits: int
    misses: int
    total_cost_saved_micros: int

    @property
    def hit_rate(self) -> float:
        hits = self.exact_hits + self.similar_hits
        lookups = hits + self.misses
        return hits / lookups if lookups else 0.0


class CacheRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _insert(self):  # type: ignore[no-untyped-def]
        dialect = self.session.get_bind().dialect.name
        if dialect == "postgresql":
            return postgresql.insert
        if dialect == "sqlite":
            return sqlite.insert
        raise RuntimeError(f"unsupported database dialect {dialect!r}")

    def find_live(self, key: str, now: datetime) -> CacheEntry | None:
        return self.session.scalars(
            select(CacheEntry).where(CacheEntry.cache_key == key, CacheEntry.expires_at > now)
        ).one_or_none()

    def image(self, image_id: str) -> ImageRow | None:
        return self.session.get(ImageRow, image_id)

    def record_exact_hit(self, entry_id: int, now: datetime) -> None:
        """One more use of the entry, saving what generating its image cost."""
        self.session.execute(
            update(CacheEntry)
            .where(CacheEntry.id == entry_id)
            .values(
                exact_hits=CacheEntry.exact_hits + 1,
                cost_saved_micros=CacheEntry.cost_saved_micros + CacheEntry.cost_micros,
                last_hit_at=now,
            )
        )

    def add_image(self, image_id: str, content_type: str, size_bytes: int, now: datetime) -> None:
        """Record stored bytes; the same bytes stored twice keep their first row."""
        insert = self._insert()
        self.session.execute(
            insert(ImageRow)
            .values(
                image_id=image_id,
                content_type=content_type,
                size_bytes=size_bytes,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["image_id"])
        )

    def add_entry(self, values: dict[str, Any], now: datetime) -> tuple[CacheEntry, bool]:
        """Insert the entry for values["cache_key"]; (entry, True) when this call's entry won.

        The unique cache_key decides a race: the first insert wins and a later one
        gets the winner's entry back. An expired entry under the same key is
        replaced, counters and all: it describes an image nobody is served any more.
        """
        insert = self._insert()
        row = {
            **values,
            "exact_hits": 0,
            "similar_hits": 0,
            "cost_saved_micros": 0,
            "last_hit_at": None,
        }
        statement = insert(CacheEntry).values(**row)
        statement = statement.on_conflict_do_update(
            index_elements=["cache_key"],
            set_={name: statement.excluded[name] for name in row if name != "cache_key"},
            where=CacheEntry.expires_at <= now,
        ).returning(CacheEntry.id)
        won_id = self.session.execute(statement).scalar_one_or_none()
        if won_id is not None:
            entry = self.session.get(CacheEntry, won_id, populate_existing=True)
            assert entry is not None
            return entry, True
        winner = self.find_live(values["cache_key"], now)
        if winner is None:  # cannot happen: the conflict was with a live entry
            raise RuntimeError(f"cache entry {values['cache_key']} vanished during insert")
        return winner, False

    def stats(self, now: datetime) -> CacheStats:
        row = self.session.execute(
            select(
                func.coalesce(func.sum(case((CacheEntry.expires_at > now, 1), else_=0)), 0),
                func.coalesce(func.sum(CacheEntry.exact_hits), 0),
                func.coalesce(func.sum(CacheEntry.similar_hits), 0),
                func.count(CacheEntry.id),
                func.coalesce(func.sum(CacheEntry.cost_saved_micros), 0),
            )
        ).one()
        return CacheStats(
            entries=int(row[0]),
            exact_hits=int(row[1]),
            similar_hits=int(row[2]),
            misses=int(row[3]),
            total_cost_saved_micros=int(row[4]),
        )
