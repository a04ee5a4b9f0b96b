"""The budget service's values: reservations, usage records, audit entries. Plain Python."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime

from services.budget.limits import LimitValues, Tier


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


class AuditAction(enum.StrEnum):
    SET_USER_TIER = "set_user_tier"
    SET_USER_LIMITS = "set_user_limits"
    SET_SPEND_CAP = "set_spend_cap"
    SET_SYSTEM_LIMITS = "set_system_limits"


@dataclass(frozen=True)
class AuditSnapshot:
    """The stored settings an audit entry is about, before or after the change.

    For a user: tier (None: the default), overrides and caps. For the system:
    the admin-set limits (daily and monthly; None: the configured ones).
    """

    tier: Tier | None = None
    overrides: LimitValues | None = None
    cap: LimitValues | None = None
    system: LimitValues | None = None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    created_at: datetime
    actor: str
    actor_role: str
    action: AuditAction
    # The user whose settings changed; "" for the system limits.
    target_user_id: str
    before: AuditSnapshot
    after: AuditSnapshot
