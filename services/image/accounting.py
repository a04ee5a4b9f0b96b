"""What ImageService needs from BudgetService, as plain Python: the usage record
of an attempt, a reservation, and the Budget protocol the BudgetService client
(services/image/budget_client.py) implements. No gRPC here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

# ---- what the use case needs from BudgetService -------------------------------------


class Outcome(enum.StrEnum):
    GENERATED = "generated"
    CACHE_HIT_EXACT = "cache_hit_exact"
    CACHE_HIT_SIMILAR = "cache_hit_similar"
    FAILED = "failed"
    FALLBACK = "fallback"
    REFUSED = "refused"


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


class Budget(Protocol):
    """BudgetService as the use case sees it (services/image/budget_client.py).

    Each method raises a DomainError: QuotaExceeded when over a limit, and
    Unavailable when BudgetService cannot be reached.
    """

    def reserve(self, user_id: str, amount_micros: int, idempotency_key: str) -> Reservation: ...

    def commit(self, reservation_id: str, actual_cost_micros: int, usage: Usage) -> None: ...

    def release(self, reservation_id: str, usage: Usage) -> None: ...

    def record_usage(self, usage: Usage) -> bool:
        """Write a record for an attempt without a reservation; True when the
        request_id already had one (nothing new was written)."""
        ...
