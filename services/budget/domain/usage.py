"""The usage ledger's records and the statistics read from them; the rule
that completes a caller's record before it is stored."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from services.budget.domain.windows import Period

ID_LENGTH = 200  # user ids, idempotency keys, request ids
MAX_PROMPT_CHARS = 32_000
MAX_ERROR_MESSAGE_CHARS = 4_000


class Outcome(enum.StrEnum):
    GENERATED = "generated"
    CACHE_HIT_EXACT = "cache_hit_exact"
    CACHE_HIT_SIMILAR = "cache_hit_similar"
    FAILED = "failed"
    FALLBACK = "fallback"
    REFUSED = "refused"
    # The reservation expired unsettled (the reaper's record); a late commit or
    # release amends it into the attempt's settled record.
    ABANDONED = "abandoned"

    @property
    def served_image(self) -> bool:
        """True when the attempt produced or served the image that was asked for."""
        return self in (Outcome.GENERATED, Outcome.CACHE_HIT_EXACT, Outcome.CACHE_HIT_SIMILAR)

    @property
    def cache_hit(self) -> str:
        """The ledger's cache_hit value for this outcome: "exact", "similar" or ""."""
        return {Outcome.CACHE_HIT_EXACT: "exact", Outcome.CACHE_HIT_SIMILAR: "similar"}.get(
            self, ""
        )


class AttemptState(enum.StrEnum):
    """What the ledger holds for a user's request_id (Admit tells ImageService,
    so that a cache hit can answer a retry without waiting for its record)."""

    NEW = "new"
    RECORDED = "recorded"
    # A reservation and no record yet: the attempt is in progress.
    RESERVED = "reserved"


class UsageKind(enum.StrEnum):
    """What an attempt paid for: an image, or the optional dish model's answer
    about a recipe (RecordUsage with its cost; no reservation, no image)."""

    IMAGE = "image"
    DISH_RECOGNITION = "dish_recognition"


@dataclass(frozen=True)
class Usage:
    """One attempt in the usage ledger (the original plan's fields and more).

    quality is "low", "medium", "high" or "" (not given).
    """

    request_id: str = ""
    user_id: str = ""
    recipe_id: str = ""
    prompt: str = ""
    prompt_length: int = 0
    size: str = ""
    quality: str = ""
    model: str = ""
    provider: str = ""
    cost_micros: int = 0
    success: bool = False
    error_message: str = ""
    fallback_used: bool = False
    generation_time_ms: int = 0
    cached: bool = False
    cache_hit: str = ""
    outcome: Outcome | None = None
    cost_saved_micros: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    reservation_id: str = ""
    created_at: datetime | None = None
    # What cost optimization reads (ImageService fills them): the dish's hash
    # (empty: a caller's prompt or an unknown dish), whether the request
    # allowed a similar-dish image, whether the caller wrote the prompt, and
    # the image generated or served (SHA-256 hex of its bytes).
    dish_key: str = ""
    similar_allowed: bool = False
    custom_prompt: bool = False
    image_id: str = ""
    kind: UsageKind = UsageKind.IMAGE


def completed(
    usage: Usage, *, default_outcome: Outcome, created_at: datetime, **fields: Any
) -> Usage:
    """A usage record as the ledger stores it: fields filled in and made consistent.

    Without an outcome the record gets default_outcome and the success that goes
    with it; with one, success is the caller's, but never for an attempt that
    served no image.
    """
    outcome = usage.outcome or default_outcome
    success = outcome.served_image and (usage.success if usage.outcome else True)
    record = replace(usage, outcome=outcome, created_at=created_at, **fields)
    return replace(
        record,
        success=success,
        prompt_length=record.prompt_length or len(record.prompt),
        cached=record.cached or outcome.cache_hit != "",
        cache_hit=record.cache_hit or outcome.cache_hit,
        fallback_used=record.fallback_used or outcome is Outcome.FALLBACK,
        # The provider's text can be long; the attempt is recorded regardless.
        error_message=record.error_message[:MAX_ERROR_MESSAGE_CHARS],
    )


@dataclass(frozen=True)
class Recorded:
    usage: Usage
    # True when a record with this request_id existed; nothing was written.
    duplicate: bool


@dataclass(frozen=True)
class Cursor:
    """Where a page of a user's records ends: (created_at, id), newest first."""

    created_at: datetime
    id: int


@dataclass(frozen=True)
class UsagePage:
    records: list[Usage]
    next_page_token: str


class StatsPeriod(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    RANGE = "range"


@dataclass(frozen=True)
class UsageTotals:
    generations: int = 0
    cost_micros: int = 0
    successful: int = 0
    failed: int = 0
    fallback: int = 0
    last_at: datetime | None = None
    cache_hits: int = 0
    cost_saved_micros: int = 0


@dataclass(frozen=True)
class BreakdownRow:
    model: str
    size: str
    quality: str
    generations: int
    successful: int
    cost_micros: int
    cache_hits: int
    cost_saved_micros: int


@dataclass(frozen=True)
class OutcomeRow:
    outcome: Outcome
    count: int
    cost_micros: int
    cost_saved_micros: int


@dataclass(frozen=True)
class UsageSummary:
    period: UsageTotals
    month: UsageTotals
    breakdown: list[BreakdownRow]
    outcomes: list[OutcomeRow]


@dataclass(frozen=True)
class UsageStats:
    user_id: str
    period: StatsPeriod
    span: Period
    time_zone: str
    total_generations: int
    total_cost_micros: int
    successful_generations: int
    failed_generations: int
    fallback_generations: int
    average_cost_per_generation_micros: int
    last_generation_at: datetime | None
    monthly_usage: int
    monthly_cost_micros: int
    cache_hits: int
    cost_saved_micros: int
    breakdown: list[BreakdownRow]
    outcomes: list[OutcomeRow]

    @classmethod
    def of(
        cls, user_id: str, period: StatsPeriod, span: Period, zone_key: str, summary: UsageSummary
    ) -> UsageStats:
        totals, month = summary.period, summary.month
        return cls(
            user_id=user_id,
            period=period,
            span=span,
            time_zone=zone_key,
            total_generations=totals.generations,
            total_cost_micros=totals.cost_micros,
            successful_generations=totals.successful,
            failed_generations=totals.failed,
            fallback_generations=totals.fallback,
            average_cost_per_generation_micros=(
                totals.cost_micros // totals.generations if totals.generations else 0
            ),
            last_generation_at=totals.last_at,
            monthly_usage=month.generations,
            monthly_cost_micros=month.cost_micros,
            cache_hits=totals.cache_hits,
            cost_saved_micros=totals.cost_saved_micros,
            breakdown=summary.breakdown,
            outcomes=sorted(summary.outcomes, key=lambda row: list(Outcome).index(row.outcome)),
        )
