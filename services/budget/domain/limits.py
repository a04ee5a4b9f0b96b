"""Tiers and the effective limits of a user's windows. Plain Python.

Every reservation is checked against four windows: the user's day and month
and the system's day and month, all calendar windows in the configured zone,
and against the per-generation limit.

A user's limit for a span is its tier's (configuration) or, when an admin set
one, the override; a cap the user set on itself then lowers it, never raises
it. The system windows take the limit an admin set (stored, so every replica
enforces it) or the configured one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from zoneinfo import ZoneInfo

from services.budget.domain.windows import SYSTEM_SUBJECT, Period, Scope, Span, WindowKey, period_of

PER_GENERATION_LIMIT_EXCEEDED = "PER_GENERATION_LIMIT_EXCEEDED"
_REASONS = {
    (Scope.USER, Span.DAY): "DAILY_LIMIT_EXCEEDED",
    (Scope.USER, Span.MONTH): "MONTHLY_LIMIT_EXCEEDED",
    (Scope.SYSTEM, Span.DAY): "SYSTEM_DAILY_LIMIT_EXCEEDED",
    (Scope.SYSTEM, Span.MONTH): "SYSTEM_MONTHLY_LIMIT_EXCEEDED",
}

# Which rule set a limit (GetLimits' limit_source); tiers read "tier:<name>".
SOURCE_OVERRIDE = "override"
SOURCE_CAP = "cap"
SOURCE_SYSTEM = "system"
SOURCE_SYSTEM_OVERRIDE = "system:override"


class Tier(enum.StrEnum):
    FREE = "free"
    PREMIUM = "premium"
    PRO = "pro"

    @property
    def source(self) -> str:
        return f"tier:{self.value}"


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


@dataclass(frozen=True)
class LimitValues:
    """Optional limits in micros: overrides, caps or admin-set system limits.
    None means "no value" (for system limits: the configured one)."""

    daily_micros: int | None = None
    monthly_micros: int | None = None
    per_generation_micros: int | None = None

    def of(self, span: Span) -> int | None:
        return self.daily_micros if span is Span.DAY else self.monthly_micros

    def as_dict(self) -> dict[str, int]:
        """The values that are set (for the audit log)."""
        return {
            name: value
            for name, value in (
                ("daily_micros", self.daily_micros),
                ("monthly_micros", self.monthly_micros),
                ("per_generation_micros", self.per_generation_micros),
            )
            if value is not None
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, int] | None) -> LimitValues:
        return cls(**dict(values or {}))


NO_LIMITS = LimitValues()


@dataclass(frozen=True)
class RateLimitValues:
    """An admin's per-user overrides of the tier's values; None keeps the tier's."""

    requests_per_minute: int | None = None
    request_burst: int | None = None
    generations_per_hour: int | None = None
    max_concurrent_generations: int | None = None

    def as_dict(self) -> dict[str, int]:
        """The values that are set (for the audit log)."""
        found = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: value for name, value in found.items() if value is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, int] | None) -> RateLimitValues:
        return cls(**dict(values or {}))


NO_RATE_OVERRIDES = RateLimitValues()


@dataclass(frozen=True)
class UserSettings:
    """What is stored for a user: its tier (None: the default), an admin's
    overrides and its own caps, an admin's rate overrides."""

    user_id: str
    tier: Tier | None = None
    overrides: LimitValues = field(default=NO_LIMITS)
    cap: LimitValues = field(default=NO_LIMITS)
    # An admin's overrides of the tier's rate rules and concurrency cap.
    rate_overrides: RateLimitValues = field(default=NO_RATE_OVERRIDES)


@dataclass(frozen=True)
class Limit:
    micros: int
    source: str


@dataclass(frozen=True)
class SystemLimitsView:
    """The system limits that apply, each with the rule that set it."""

    daily: Limit
    monthly: Limit


@dataclass(frozen=True)
class EffectiveLimits:
    """The limits that apply to one user now, each with the rule that set it."""

    user_id: str
    tier: Tier
    per_generation: Limit
    user: Mapping[Span, Limit]
    system: Mapping[Span, Limit]


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


def _lowered_by_cap(base: Limit, cap: int | None) -> Limit:
    """A cap only ever lowers a limit; at or above it, the cap changes nothing."""
    if cap is not None and cap < base.micros:
        return Limit(cap, SOURCE_CAP)
    return base


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

    def tier_of(self, stored: str | Tier | None) -> Tier:
        """A user's tier; users the service has no tier for are on the default tier."""
        return Tier(stored) if stored else self.default_tier

    def tier_limits(self, tier: Tier) -> TierLimits:
        return self._tiers[tier]

    def system_limit(self, span: Span, stored: LimitValues) -> Limit:
        """The system limit of a span: an admin's, else the configured one."""
        value = stored.of(span)
        if value is not None:
            return Limit(value, SOURCE_SYSTEM_OVERRIDE)
        return Limit(self._system[span], SOURCE_SYSTEM)

    def effective(self, user: UserSettings, system: LimitValues = NO_LIMITS) -> EffectiveLimits:
        tier = self.tier_of(user.tier)
        defaults = self._tiers[tier]

        def user_limit(override: int | None, default: int, cap: int | None) -> Limit:
            base = (
                Limit(override, SOURCE_OVERRIDE)
                if override is not None
                else Limit(default, tier.source)
            )
            return _lowered_by_cap(base, cap)

        return EffectiveLimits(
            user_id=user.user_id,
            tier=tier,
            per_generation=user_limit(
                user.overrides.per_generation_micros,
                defaults.per_generation_micros,
                user.cap.per_generation_micros,
            ),
            user={
                Span.DAY: user_limit(
                    user.overrides.daily_micros, defaults.daily_micros, user.cap.daily_micros
                ),
                Span.MONTH: user_limit(
                    user.overrides.monthly_micros, defaults.monthly_micros, user.cap.monthly_micros
                ),
            },
            system={span: self.system_limit(span, system) for span in Span},
        )

    def windows(self, limits: EffectiveLimits, now: datetime) -> list[WindowLimit]:
        """The four windows that apply now, in lock order."""
        found = []
        for span in (Span.DAY, Span.MONTH):
            period = period_of(span, now, self.zone)
            user, system = limits.user[span], limits.system[span]
            found.append(
                WindowLimit(
                    WindowKey(Scope.USER, limits.user_id, span, period.start_date),
                    user.micros,
                    user.source,
                    period,
                )
            )
            found.append(
                WindowLimit(
                    WindowKey(Scope.SYSTEM, SYSTEM_SUBJECT, span, period.start_date),
                    system.micros,
                    system.source,
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
