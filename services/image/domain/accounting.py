"""Accounting values ImageService exchanges with BudgetService, as plain Python:
the usage record of an attempt and a reservation. The Budget port that carries
them is app/ports.py; its gRPC client is adapters/budget_client.py.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Outcome(enum.StrEnum):
    GENERATED = "generated"
    CACHE_HIT_EXACT = "cache_hit_exact"
    CACHE_HIT_SIMILAR = "cache_hit_similar"
    FAILED = "failed"
    FALLBACK = "fallback"
    REFUSED = "refused"


class UsageKind(enum.StrEnum):
    """What an attempt paid for: an image, or the dish model's answer about a recipe."""

    IMAGE = "image"
    DISH_RECOGNITION = "dish_recognition"


@dataclass(frozen=True)
class Usage:
    """One attempt's usage record, as BudgetService's ledger keeps it."""

    request_id: str
    user_id: str
    recipe_id: str
    prompt: str
    size: str
    quality: str
    model: str
    provider: str
    outcome: Outcome = Outcome.FAILED
    cost_micros: int = 0
    success: bool = False
    error_message: str = ""
    generation_time_ms: int = 0
    cached: bool = False
    cache_hit: str = ""
    cost_saved_micros: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    fallback_used: bool = False
    # For BudgetService's cost optimization: the dish a built prompt was for
    # (recipes.similarity.match_key, a hash; empty for a caller's prompt or an
    # unknown dish), how the request was made, and the image (its id, the
    # SHA-256 hex of its bytes) the attempt generated or served.
    dish_key: str = ""
    similar_allowed: bool = False
    custom_prompt: bool = False
    image_id: str = ""
    kind: UsageKind = UsageKind.IMAGE

    def without_text(self) -> Usage:
        """The record without the caller's free text (recipe id, prompt, error
        message): what a ledger that refused that text still takes, so a paid
        generation's spend is recorded all the same."""
        return replace(self, recipe_id="", prompt="", error_message="")


class AttemptState(enum.StrEnum):
    """What BudgetService holds for a request_id when Admit is asked."""

    NEW = "new"
    # A usage record: the attempt is over, a retry records nothing.
    RECORDED = "recorded"
    # A held reservation and no record: the attempt is in progress.
    RESERVED = "reserved"


class ReservationState(enum.StrEnum):
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    state: ReservationState
    amount_micros: int
    # True when the idempotency key was seen before: this is that reservation.
    replayed: bool
