"""Tiers and the effective limits of a user's windows. Plain Python.

Every reservation is checked against four windows: the user's day and month
and the system's day and month, all calendar windows in the configured zone.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from services.budget.windows import SYSTEM_SUBJECT, Period, Scope, Span, WindowKey, period_of

PER_GENERATION_LIMIT_EXCEEDED = "PER_GENERATION_LIMIT_EXCEEDED"
_REASONS = {
    (Scope.USER, Span.DAY): "DAILY_LIMIT_EXCEEDED",
    (Scope.USER, Span.MONTH): "MONTHLY_LIMIT_EXCEEDED",
    (Scope.SYSTEM, Span.DAY): "SYSTEM_DAILY_LIMIT_EXCEEDED",
    (Scope.SYSTEM, Span.MONTH): "SYSTEM_MONTHLY_LIMIT_EXCEEDED",
}


class Tier(enum.StrEnum):
    FREE = "free"
    PREMIUM = "premium"
    PRO = "pro"


@dataclass(frozen=True)
class TierLimits:
    daily_micros: int
    monthly_micros: int
    per_generation_micros: int


# The original plan's limits (USD 0.50/5/0.08, 2/25/0.12, 10/100/0.12) in micros.
DEFAULT_TIERS: Mapping[Tier, TierLimits] = {
    Tier.FREE: TierLimits(500_000, 5_000_000, 80_000),
    Tier.PREMIUM: TierLimits(2_000_000, 25_000_000, 120_000),
    Tier.PRO: TierLimits(10_000_000, 100_000_000, 120_000),
}


def refusal_reason(key: WindowKey) -> str:
    """The ErrorInfo reason for a refusal by this window."""
    return _REASONS[(key.scope, key.span)]


@dataclass(frozen=True)
class WindowLimit:
    """A window that applies now, with its limit and the rule that set it."""

    key: WindowKey
    limit_micros: int
    source: str
    period: Period

    @property
    def reason(self) -> str:
        return refusal_reason(self.key)


class LimitPolicy:
    """Which limits apply to a user at an instant."""

    def __init__(
        self,
        tiers: Mapping[Tier, TierLimits],
        default_tier: Tier,
        system_daily_micros: int,
        system_monthly_micros: int,
        zone: ZoneInfo,
    ) -> None:
        missing = set(Tier) - set(tiers)
        if missing:
            raise ValueError(f"no limits for tier(s) {', '.join(sorted(missing))}")
        self._tiers = dict(tiers)
        self.default_tier = default_tier
        self._system = {Span.DAY: system_daily_micros, Span.MONTH: system_monthly_micros}
        self.zone = zone

    def tier_of(self, stored: str | None) -> Tier:
        """A user's tier; users the service has no row for are on the default tier."""
        return Tier(stored) if stored else self.default_tier

    def tier_limits(self, tier: Tier) -> TierLimits:
        return self._tiers[tier]

    def windows(self, user_id: str, tier: Tier, now: datetime) -> list[WindowLimit]:
        """The four windows that apply now, in lock order."""
        limits = self._tiers[tier]
        per_user = {Span.DAY: limits.daily_micros, Span.MONTH: limits.monthly_micros}
        found = []
        for span in (Span.DAY, Span.MONTH):
            period = period_of(span, now, self.zone)
            found.append(
                WindowLimit(
                    WindowKey(Scope.USER, user_id, span, period.start_date),
                    per_user[span],
                    f"tier:{tier}",
                    period,
                )
            )
            found.append(
                WindowLimit(
                    WindowKey(Scope.SYSTEM, SYSTEM_SUBJECT, span, period.start_date),
                    self._system[span],
                    "system",
                    period,
                )
            )
        return sorted(found, key=lambda window: window.key.lock_order())


def held_window_keys(user_id: str, day_start: date, month_start: date) -> list[WindowKey]:
    """The four windows a reservation taken on day_start holds against, in lock order."""
    keys = [
        WindowKey(Scope.USER, user_id, Span.DAY, day_start),
        WindowKey(Scope.USER, user_id, Span.MONTH, month_start),
        WindowKey(Scope.SYSTEM, SYSTEM_SUBJECT, Span.DAY, day_start),
        WindowKey(Scope.SYSTEM, SYSTEM_SUBJECT, Span.MONTH, month_start),
    ]
    return sorted(keys, key=WindowKey.lock_order)
