"""SimulateLimits: replay the ledger against proposed limits. Plain Python.

The replay, precisely:

- The records are those created in [start, end), every outcome, taken in
  time order (created_at, then id) across all users.
- A record costs what the ledger charged for it (cost_micros). A cache hit, a
  failure, a refusal or an abandoned attempt cost nothing, so it is never
  refused and adds no spend (what a request refused in reality would have
  cost is not in the ledger, so it is not replayed as spend either).
- Each user is on its tier as stored now (the ledger does not keep tiers), with
  the proposed limits of that tier (a tier not proposed keeps its configured
  ones); an admin's override of a user replaces the tier's value and the
  user's cap lowers it, as LimitPolicy does now.
- Windows are the service's calendar days and months in its zone; each
  starts with nothing spent. Credits and holds are not replayed.
- A record with a cost is refused, with the first reason that applies, when:
  its cost exceeds the per-generation limit (PER_GENERATION_LIMIT_EXCEEDED);
  the user's day's allowed spend plus its cost exceeds the daily limit
  (DAILY_LIMIT_EXCEEDED); the same for the month (MONTHLY_LIMIT_EXCEEDED);
  then, only when system limits are proposed, the system's day and month
  (SYSTEM_DAILY_LIMIT_EXCEEDED, SYSTEM_MONTHLY_LIMIT_EXCEEDED).
- A refused record adds nothing to any window; an allowed one adds its cost
  to all four. Avoided spend is the cost of the refused records: actual spend
  = allowed spend + avoided spend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from services.budget.domain.limits import (
    PER_GENERATION_LIMIT_EXCEEDED,
    LimitValues,
    Tier,
    TierLimits,
)
from services.budget.domain.windows import local_date

DAILY = "DAILY_LIMIT_EXCEEDED"
MONTHLY = "MONTHLY_LIMIT_EXCEEDED"
SYSTEM_DAILY = "SYSTEM_DAILY_LIMIT_EXCEEDED"
SYSTEM_MONTHLY = "SYSTEM_MONTHLY_LIMIT_EXCEEDED"
REASONS = (PER_GENERATION_LIMIT_EXCEEDED, DAILY, MONTHLY, SYSTEM_DAILY, SYSTEM_MONTHLY)


@dataclass(frozen=True)
class Proposal:
    """Every tier's limits (proposed, or configured), and the system's
    (None: not replayed)."""

    tiers: Mapping[Tier, TierLimits]
    system_daily_micros: int | None = None
    system_monthly_micros: int | None = None


@dataclass(frozen=True)
class ReplayedRecord:
    user_id: str
    created_at: datetime
    cost_micros: int
    # The user's stored settings now.
    tier: Tier
    overrides: LimitValues
    cap: LimitValues


@dataclass
class RefusalTally:
    reason: str
    requests: int = 0
    users: set[str] = field(default_factory=set)
    cost_micros: int = 0


@dataclass
class Tally:
    """The replay's counts for one tier (tier None: all)."""

    tier: Tier | None
    limits: TierLimits
    requests: int = 0
    users: set[str] = field(default_factory=set)
    refused_users: set[str] = field(default_factory=set)
    actual_spend_micros: int = 0
    allowed_spend_micros: int = 0
    refusals: dict[str, RefusalTally] = field(default_factory=dict)

    @property
    def refused_requests(self) -> int:
        return sum(r.requests for r in self.refusals.values())

    @property
    def avoided_spend_micros(self) -> int:
        return self.actual_spend_micros - self.allowed_spend_micros

    def count(self, record: ReplayedRecord, refused: str | None) -> None:
        self.requests += 1
        self.users.add(record.user_id)
        self.actual_spend_micros += record.cost_micros
        if refused is None:
            self.allowed_spend_micros += record.cost_micros
            return
        self.refused_users.add(record.user_id)
        tally = self.refusals.setdefault(refused, RefusalTally(refused))
        tally.requests += 1
        tally.users.add(record.user_id)
        tally.cost_micros += record.cost_micros


@dataclass
class _Spent:
    """Allowed spend in the current day and month of one user or the system."""

    day: date = date.min
    day_micros: int = 0
    month: date = date.min
    month_micros: int = 0

    def move_to(self, day: date) -> None:
        if day != self.day:
            self.day, self.day_micros = day, 0
        month = day.replace(day=1)
        if month != self.month:
            self.month, self.month_micros = month, 0

    def add(self, micros: int) -> None:
        self.day_micros += micros
        self.month_micros += micros


def _lowered(tier_value: int, override: int | None, cap: int | None) -> int:
    value = override if override is not None else tier_value
    return min(value, cap) if cap is not None else value


def _user_limits(tier: TierLimits, overrides: LimitValues, cap: LimitValues) -> TierLimits:
    """A user's limits as LimitPolicy.effective makes them: an override
    replaces the tier's value, a cap lowers it."""
    return TierLimits(
        daily_micros=_lowered(tier.daily_micros, overrides.daily_micros, cap.daily_micros),
        monthly_micros=_lowered(tier.monthly_micros, overrides.monthly_micros, cap.monthly_micros),
        per_generation_micros=_lowered(
            tier.per_generation_micros, overrides.per_generation_micros, cap.per_generation_micros
        ),
    )


class Replay:
    """Feed records in time order with add(); read the tallies at the end."""

    def __init__(self, proposal: Proposal, zone: ZoneInfo) -> None:
        self._proposal = proposal
        self._zone = zone
        self._users: dict[str, _Spent] = {}
        self._system = _Spent()
        self.tiers = {tier: Tally(tier, proposal.tiers[tier]) for tier in Tier}
        self.total = Tally(None, TierLimits(0, 0, 0))

    def add(self, record: ReplayedRecord) -> None:
        refused = self._refusal(record) if record.cost_micros > 0 else None
        if refused is None and record.cost_micros > 0:
            self._users[record.user_id].add(record.cost_micros)
            self._system.add(record.cost_micros)
        self.tiers[record.tier].count(record, refused)
        self.total.count(record, refused)

    def _refusal(self, record: ReplayedRecord) -> str | None:
        day = local_date(record.created_at, self._zone)
        user = self._users.setdefault(record.user_id, _Spent())
        user.move_to(day)
        self._system.move_to(day)
        limits = _user_limits(self._proposal.tiers[record.tier], record.overrides, record.cap)
        cost = record.cost_micros
        system = self._system
        checks = (
            (PER_GENERATION_LIMIT_EXCEEDED, cost, limits.per_generation_micros),
            (DAILY, user.day_micros + cost, limits.daily_micros),
            (MONTHLY, user.month_micros + cost, limits.monthly_micros),
            (SYSTEM_DAILY, system.day_micros + cost, self._proposal.system_daily_micros),
            (SYSTEM_MONTHLY, system.month_micros + cost, self._proposal.system_monthly_micros),
        )
        for reason, would_be, limit in checks:
            if limit is not None and would_be > limit:
                return reason
        return None
