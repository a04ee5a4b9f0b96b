"""ImageService tables: stored images and the cache entries that point at them.

Its own MetaData: BudgetService's tables live in the same PostgreSQL database in
production, and neither service reads the other's. Money is BigInteger micros.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import NAMING_CONVENTION, UtcDateTime

metadata = MetaData(naming_convention=NAMING_CONVENTION)


# SQLite gives auto-increment only to an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = metadata


class ImageRow(Base):
    """One stored image, named by the SHA-256 of its bytes."""

    __tablename__ = "images"

    image_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CacheEntry(Base):
    """A generated image reusable for the same model, size, quality and prompt."""

    __tablename__ = "cache_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # SHA-256 hex of the canonical JSON of model, size, quality and prompt.
    cache_key: Mapped[str] = mapped_column(String(64), unique=True)
    model: Mapped[str] = mapped_column(String(100))
    size: Mapped[str] = mapped_column(String(32))
    quality: Mapped[str] = mapped_column(String(16))
    prompt: Mapped[str] = mapped_column(Text)
    # The recipe context the prompt was built from (analyzer.RecipeContext.to_json()).
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    image_id: Mapped[str] = mapped_column(String(64), ForeignKey("images.image_id"))
    provider: Mapped[str] = mapped_column(String(32))
    # What generating the image cost; each hit saves this much.
    cost_micros: Mapped[int] = mapped_column(BigInteger)
    exact_hits: Mapped[int] = mapped_column(BigInteger, default=0)
    similar_hits: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_saved_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    last_hit_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


Index("ix_cache_entries_image_id", CacheEntry.image_id)
