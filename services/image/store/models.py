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
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    false,
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
    # When the retention job first found nothing referring to the image (no
    # cache entry, no outbox row); NULL while something does. Storing the
    # image again clears it (store/retention.py).
    unreferenced_since: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # The fallback image: never a retention candidate.
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


Index("ix_images_unreferenced_since", ImageRow.unreferenced_since)


class CacheEntry(Base):
    """A generated image reusable for the same model, size, quality and prompt
    (exact), and for recipes of the same dish (similar, through match_key)."""

    __tablename__ = "cache_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # SHA-256 hex of the canonical JSON of model, size, quality and prompt.
    cache_key: Mapped[str] = mapped_column(String(64), unique=True)
    model: Mapped[str] = mapped_column(String(100))
    size: Mapped[str] = mapped_column(String(32))
    quality: Mapped[str] = mapped_column(String(16))
    # The quality's order (domain/cache_policy.py): a similar hit needs
    # an entry of at least the requested rank.
    quality_rank: Mapped[int] = mapped_column(SmallInteger)
    prompt: Mapped[str] = mapped_column(Text)
    # The recipe context the prompt was built from (recipes.analyzer.RecipeContext.to_json()).
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    # SHA-256 hex of model, size, dish identity, dietary tags and signature foods
    # (recipes.similarity.match_key); NULL for a caller's prompt or an unknown dish, which
    # are never served to another recipe.
    match_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    image_id: Mapped[str] = mapped_column(String(64), ForeignKey("images.image_id"))
    provider: Mapped[str] = mapped_column(String(32))
    # What generating the image cost; each exact hit saves this much.
    cost_micros: Mapped[int] = mapped_column(BigInteger)
    exact_hits: Mapped[int] = mapped_column(BigInteger, default=0)
    similar_hits: Mapped[int] = mapped_column(BigInteger, default=0)
    # exact_hits + similar_hits, kept as a column so the most used are an index away.
    uses: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_saved_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # An invalidated entry expires at once (expires_at = invalidated_at).
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    last_hit_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    invalidated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # The attempt (user, request id) whose generation stored the entry: a retry of
    # that request id is served this entry and no other. NULL before migration 0004.
    created_by_user_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_by_request_id: Mapped[str | None] = mapped_column(String(200), nullable=True)


Index("ix_cache_entries_image_id", CacheEntry.image_id)
Index(
    "ix_cache_entries_created_by",
    CacheEntry.created_by_user_id,
    CacheEntry.created_by_request_id,
)
Index("ix_cache_entries_match_key", CacheEntry.match_key, CacheEntry.expires_at)
# Most used first, ties oldest first: the order GetCacheStats pages in, read
# straight off the index (no sort of every live entry).
Index("ix_cache_entries_uses", CacheEntry.uses.desc(), CacheEntry.id)


class CacheTotals(Base):
    """One row (id 1): the cache's lifetime figures, added to as entries are
    stored and purged and hit counts written (migration 0007), so
    GetCacheStats never reads the whole table."""

    __tablename__ = "cache_totals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purged_entries: Mapped[int] = mapped_column(BigInteger)
    exact_hits: Mapped[int] = mapped_column(BigInteger)
    similar_hits: Mapped[int] = mapped_column(BigInteger)
    cost_saved_micros: Mapped[int] = mapped_column(BigInteger)
    # Every entry ever stored (the misses).
    entries_added: Mapped[int] = mapped_column(BigInteger, default=0)


class GenerationLease(Base):
    """Who is generating the image for a cache key right now (single flight).

    Claimed with one INSERT ... ON CONFLICT and renewed by its owner's heartbeat
    while the generation runs; a lease past expires_at belongs to a process that
    died or hung and may be taken over.
    """

    __tablename__ = "generation_leases"

    cache_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    acquired_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PendingSettlement(Base):
    """A commit or release owed to BudgetService (the settlement outbox).

    Written before the first attempt (with the image and cache entry when the
    flow stores one), deleted when BudgetService acknowledges. The background
    settler retries what is due; `attempts` is the optimistic lock a settler
    claims a row with, so two replicas never work on one row at once. A row
    BudgetService refused for good keeps its record with abandoned_at set.
    """

    __tablename__ = "pending_settlements"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reservation_id: Mapped[str] = mapped_column(String(64))
    # "commit" or "release".
    kind: Mapped[str] = mapped_column(String(16))
    actual_cost_micros: Mapped[int] = mapped_column(BigInteger)
    # The attempt's usage record (domain.accounting.Usage as JSON).
    usage: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Set when BudgetService refused it for good (NOT_FOUND, FAILED_PRECONDITION,
    # INVALID_ARGUMENT): never retried, kept for reconciling by hand.
    abandoned_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


Index(
    "ix_pending_settlements_next_attempt_at",
    PendingSettlement.abandoned_at,
    PendingSettlement.next_attempt_at,
)
Index("ix_pending_settlements_reservation_id", PendingSettlement.reservation_id)


class DishAnswerRow(Base):
    """What the optional dish model said about a recipe's text (one call a
    recipe text and model; recipes.model_dish)."""

    __tablename__ = "dish_answers"

    # SHA-256 hex of the recipe's text (recipes.model_dish.recipe_hash).
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    dish: Mapped[str] = mapped_column(String(80))
    cuisine: Mapped[str] = mapped_column(String(80))
    main_ingredients: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
