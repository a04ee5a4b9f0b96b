"""Reservations and the windows they hold money in: the values the reservation
use cases take and return."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from services.budget.domain.admission import CapState, RateState
from services.budget.domain.alert_rules import WindowWarning
from services.budget.domain.blocks import Block
from services.budget.domain.credits import Credit
from services.budget.domain.limits import (
    NO_RATE_OVERRIDES,
    Limit,
    LimitValues,
    RateLimitValues,
    Tier,
)
from services.budget.domain.windows import Period, WindowKey
from services.common.errors import DomainError

# A commit charges at most this many times its hold. A hold is the most an
# image can cost by the price table, so a provider-reported cost far above it
# is a pricing or reporting error: charged up to the cap (the overrun is
# counted and logged at ERROR), never free, never able to wedge the windows.
MAX_COMMIT_FACTOR = 2


class ReservationState(enum.StrEnum):
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


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
class Counters:
    """A window row's money: spent, held and spent without a hold."""

    spent_micros: int = 0
    reserved_micros: int = 0
    overrun_micros: int = 0


@dataclass(frozen=True)
class Settlement:
    """What settling a reservation does to its four windows: take unhold from
    reserved, add spend to spent and overrun to overrun."""

    unhold_micros: int
    spend_micros: int
    overrun_micros: int = 0


@dataclass(frozen=True)
class WindowState:
    key: WindowKey
    limit_micros: int
    spent_micros: int
    reserved_micros: int
    source: str
    period: Period
    # Spend no hold covered (late commits, commits above their hold).
    overrun_micros: int = 0
    # The window's active credits (GrantCredit), on top of limit_micros.
    credit_micros: int = 0

    @property
    def effective_limit_micros(self) -> int:
        return self.limit_micros + self.credit_micros

    @property
    def remaining_micros(self) -> int:
        return max(0, self.effective_limit_micros - self.spent_micros - self.reserved_micros)

    def admits(self, amount_micros: int) -> bool:
        return (
            self.spent_micros + self.reserved_micros + amount_micros <= self.effective_limit_micros
        )


@dataclass(frozen=True)
class LimitsView:
    user_id: str
    tier: Tier
    per_generation: Limit
    windows: list[WindowState]
    overrides: LimitValues
    cap: LimitValues
    # Admission: the rate rules with what is left, the concurrency cap, the
    # block in force and an admin's rate overrides.
    rate_rules: list[RateState] = field(default_factory=list)
    concurrency: CapState | None = None
    block: Block | None = None
    rate_overrides: RateLimitValues = NO_RATE_OVERRIDES
    # The credits of the user's current day and month, active or expired.
    credits: list[Credit] = field(default_factory=list)
    # When the view was read (a credit is active before its expiry).
    as_of: datetime | None = None
    # GetLimits' warning of each window (domain.alert_rules), by its key.
    warnings: Mapping[WindowKey, WindowWarning] = field(default_factory=dict)


@dataclass(frozen=True)
class AdmissionVerdict:
    """What Admit and ReserveBudget would refuse a call with now (None: they
    would not), evaluated without taking anything."""

    # Admit's: the block, then the request rates.
    admit: DomainError | None
    # ReserveBudget's for the checked amount, in its order: the per-generation
    # limit, the generation rates, the concurrency caps, the windows.
    reserve: DomainError | None
    # The generation rates' and caps' alone.
    generation: DomainError | None


@dataclass(frozen=True)
class BudgetCheck:
    allowed: bool
    # The ErrorInfo reason ReserveBudget would refuse with; "" when allowed.
    reason: str
    windows: list[WindowState]
    per_generation: Limit | None = None
    # Only when admission was asked for.
    admission: AdmissionVerdict | None = None


@dataclass(frozen=True)
class Reserved:
    reservation: Reservation
    replayed: bool


@dataclass(frozen=True)
class Committed:
    reservation: Reservation
    # What this call added to spend: zero when the reservation was already committed.
    charged_micros: int
