"""The budget service's values: reservations and usage records. Plain Python."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime


class ReservationState(enum.StrEnum):
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


class Outcome(enum.StrEnum):
    GENERATED = "generated"
    CACHE_HIT_EXACT = "cache_hit_exact"
    CACHE_HIT_SIMILAR = "cache_hit_similar"
    FAILED = "failed"
    FALLBACK = "fallback"
    REFUSED = "refused"

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


@dataclass(frozen=True)
class Reservation:
    id: str
    user_id: str
    idempotency_key: str
    amount_micros: int
    state: ReservationState
    committed_micros: int
    overrun: bool
    day_start: date
    month_start: date
    created_at: datetime
    expires_at: datetime


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
