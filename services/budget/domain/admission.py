"""Admission control's rules: rate rules (GCRA) and concurrency caps. Plain Python.

A rate rule admits `limit` calls per `period_seconds` on average and `burst`
calls at once after a quiet period. It is enforced with GCRA: one theoretical
arrival time (TAT) a key, in microseconds since the epoch. A call at `now` is
admitted when max(TAT, now) - now <= (burst - 1) * interval, and moves the TAT
to max(TAT, now) + interval; a refused call moves nothing, so it consumes no
quota. Nothing refills in the background: what is left follows from the TAT.

Which rules apply: the user's tier's (configuration), each value replaced by
an admin's override; and the system's. A limit of 0 disables a rule. A rule
in shadow mode is evaluated and counted ("would refuse"), never enforced.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.budget.domain.limits import (
    SOURCE_OVERRIDE,
    SOURCE_SYSTEM,
    RateLimitValues,
    Tier,
)
from services.common.errors import QuotaExceeded, RateLimited

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = 1_000_000
# A concurrency refusal's RetryInfo: a slot frees when a generation ends.
CONCURRENCY_RETRY = timedelta(seconds=1)
SHADOW_ALL = "all"


class RuleName(enum.StrEnum):
    USER_REQUESTS = "user_requests"
    USER_GENERATIONS = "user_generations"
    SYSTEM_REQUESTS = "system_requests"
    SYSTEM_GENERATIONS = "system_generations"
    USER_CONCURRENCY = "user_concurrency"
    SYSTEM_CONCURRENCY = "system_concurrency"

    @property
    def is_system(self) -> bool:
        return self.value.startswith("system_")


_REASONS = {
    RuleName.USER_REQUESTS: "RATE_LIMITED",
    RuleName.USER_GENERATIONS: "GENERATION_RATE_LIMITED",
    RuleName.SYSTEM_REQUESTS: "SYSTEM_RATE_LIMITED",
    RuleName.SYSTEM_GENERATIONS: "SYSTEM_RATE_LIMITED",
    RuleName.USER_CONCURRENCY: "CONCURRENCY_LIMIT_EXCEEDED",
    RuleName.SYSTEM_CONCURRENCY: "SYSTEM_CONCURRENCY_LIMIT_EXCEEDED",
}


def to_micros(instant: datetime) -> int:
    """An instant as whole microseconds since the epoch (exact, no float)."""
    return (instant - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True)
class TierRates:
    """A tier's rate rules and concurrency cap; 0 disables one."""

    requests_per_minute: int
    request_burst: int
    generations_per_hour: int
    max_concurrent_generations: int


@dataclass(frozen=True)
class SystemRates:
    """The system-wide rate rules and concurrency cap; 0 disables one."""

    requests_per_second: int
    request_burst: int
    generations_per_minute: int
    max_concurrent_generations: int


@dataclass(frozen=True)
class RateRule:
    """One enabled rate rule as it applies to one key."""

    name: RuleName
    key: str
    limit: int
    period_seconds: int
    burst: int
    source: str
    shadow: bool
    subject: str

    @property
    def interval_micros(self) -> int:
        """The time one call takes from the allowance (rounded up: never more
        than `limit` calls a period)."""
        return -(-self.period_seconds * MICROS // self.limit)

    @property
    def tolerance_micros(self) -> int:
        return (self.burst - 1) * self.interval_micros

    @property
    def reason(self) -> str:
        return _REASONS[self.name]

    def metadata(self) -> dict[str, str]:
        return {
            "rule": self.name.value,
            "limit": str(self.limit),
            "period_seconds": str(self.period_seconds),
            "burst": str(self.burst),
            "source": self.source,
        }


@dataclass(frozen=True)
class RateState:
    """What is left of a rule at an instant (GetLimits, Admit)."""

    rule: RateRule
    remaining: int
    # When the next call is admitted; None when one is admitted now.
    next_time: datetime | None
    # When the whole burst is available again.
    full_time: datetime


def rate_state(rule: RateRule, tat: int | None, now: datetime) -> RateState:
    """The rule's state given its stored TAT (None: never used)."""
    now_us = to_micros(now)
    base = max(tat if tat is not None else now_us, now_us)
    used = base - now_us
    interval = rule.interval_micros
    remaining = max(0, (rule.burst * interval - used) // interval)
    next_time = None if remaining else from_micros(base - rule.tolerance_micros)
    return RateState(rule, remaining, next_time, from_micros(base))


def admits(rule: RateRule, tat: int | None, now: datetime) -> bool:
    """Whether a call at `now` would be admitted, given the stored TAT (None:
    never used): the take's own condition, evaluated without writing."""
    if tat is None:
        return True
    return max(tat, to_micros(now)) - to_micros(now) <= rule.tolerance_micros


def retry_after(rule: RateRule, tat: int, now: datetime) -> timedelta:
    """How long until a call refused at `now` would be admitted."""
    wait = max(tat, to_micros(now)) - rule.tolerance_micros - to_micros(now)
    return timedelta(microseconds=max(wait, 1))


def rate_refusal(rule: RateRule, tat: int, now: datetime) -> RateLimited:
    wait = retry_after(rule, tat, now)
    per = "minute" if rule.period_seconds == 60 else f"{rule.period_seconds} s"
    return RateLimited(
        f"{rule.name.value.replace('_', ' ')}: at most {rule.limit} a {per} "
        f"(burst {rule.burst}, {rule.source}); retry in {wait.total_seconds():.6f} s",
        reason=rule.reason,
        subject=rule.subject,
        retry_after=wait,
        metadata=rule.metadata(),
    )


@dataclass(frozen=True)
class ConcurrencyCap:
    """At most `limit` held reservations (generations in flight)."""

    name: RuleName
    limit: int
    source: str
    shadow: bool
    subject: str


@dataclass(frozen=True)
class CapState:
    """A concurrency cap and the generations in flight under it (GetLimits)."""

    cap: ConcurrencyCap
    in_flight: int


def concurrency_refusal(cap: ConcurrencyCap, in_flight: int) -> QuotaExceeded:
    whose = "the system's" if cap.name.is_system else "this user's"
    return QuotaExceeded(
        f"{whose} generations in flight are at the cap of {cap.limit} ({cap.source}); "
        "retry when one finishes",
        reason=_REASONS[cap.name],
        subject=cap.subject,
        retry_after=CONCURRENCY_RETRY,
        metadata={
            "rule": cap.name.value,
            "limit": str(cap.limit),
            "in_flight": str(in_flight),
            "source": cap.source,
        },
    )


def rate_key(name: RuleName, user_id: str) -> str:
    """The key of a rule's TAT: the user's own, or the system's one."""
    return name.value if name.is_system else f"{name.value}:{user_id}"


def parse_shadow(raw: str) -> frozenset[RuleName]:
    """`all`, or a comma list of rule names; unknown names raise ValueError."""
    names = {part.strip().lower() for part in raw.split(",") if part.strip()}
    if SHADOW_ALL in names:
        return frozenset(RuleName)
    return frozenset(RuleName(name) for name in names)


@dataclass(frozen=True)
class AdmissionSettings:
    """The configured rules: each tier's, the system's, and which are shadowed."""

    tiers: Mapping[Tier, TierRates]
    system: SystemRates
    shadow: frozenset[RuleName] = frozenset()


NO_TIER_RATES = TierRates(0, 0, 0, 0)
# Every rule disabled (0): nothing is refused for a rate or a cap.
NO_ADMISSION = AdmissionSettings({tier: NO_TIER_RATES for tier in Tier}, SystemRates(0, 0, 0, 0))


class AdmissionPolicy:
    """Which rate rules and caps apply to a user. Generation rules admit a
    whole period's limit at once (their burst is their limit)."""

    def __init__(self, settings: AdmissionSettings) -> None:
        self._settings = settings

    def _rule(
        self, name: RuleName, user_id: str, limit: int, period: int, burst: int, source: str
    ) -> RateRule | None:
        if limit <= 0:
            return None
        return RateRule(
            name=name,
            key=rate_key(name, user_id),
            limit=limit,
            period_seconds=period,
            burst=max(1, burst),
            source=SOURCE_SYSTEM if name.is_system else source,
            shadow=name in self._settings.shadow,
            subject="system" if name.is_system else f"user:{user_id}",
        )

    def _user_value(
        self, tier: Tier, overrides: RateLimitValues, field: str
    ) -> tuple[int, str | None]:
        """A user's value of one field and the override's source, if overridden."""
        override = getattr(overrides, field)
        if override is not None:
            return int(override), SOURCE_OVERRIDE
        return int(getattr(self._settings.tiers[tier], field)), None

    def request_rules(self, user_id: str, tier: Tier, overrides: RateLimitValues) -> list[RateRule]:
        """The rules Admit checks, the user's first (the lock order)."""
        limit, by_limit = self._user_value(tier, overrides, "requests_per_minute")
        burst, by_burst = self._user_value(tier, overrides, "request_burst")
        system = self._settings.system
        rules = [
            self._rule(
                RuleName.USER_REQUESTS,
                user_id,
                limit,
                60,
                burst,
                by_limit or by_burst or tier.source,
            ),
            self._rule(
                RuleName.SYSTEM_REQUESTS,
                user_id,
                system.requests_per_second,
                1,
                system.request_burst,
                SOURCE_SYSTEM,
            ),
        ]
        return [rule for rule in rules if rule is not None]

    def generation_rules(
        self, user_id: str, tier: Tier, overrides: RateLimitValues
    ) -> list[RateRule]:
        """The rules ReserveBudget checks, the user's first (the lock order)."""
        limit, source = self._user_value(tier, overrides, "generations_per_hour")
        per_minute = self._settings.system.generations_per_minute
        rules = [
            self._rule(
                RuleName.USER_GENERATIONS, user_id, limit, 3600, limit, source or tier.source
            ),
            self._rule(
                RuleName.SYSTEM_GENERATIONS, user_id, per_minute, 60, per_minute, SOURCE_SYSTEM
            ),
        ]
        return [rule for rule in rules if rule is not None]

    def user_cap(
        self, user_id: str, tier: Tier, overrides: RateLimitValues
    ) -> ConcurrencyCap | None:
        limit, source = self._user_value(tier, overrides, "max_concurrent_generations")
        if limit <= 0:
            return None
        name = RuleName.USER_CONCURRENCY
        return ConcurrencyCap(
            name, limit, source or tier.source, name in self._settings.shadow, f"user:{user_id}"
        )

    def system_cap(self) -> ConcurrencyCap | None:
        limit = self._settings.system.max_concurrent_generations
        if limit <= 0:
            return None
        name = RuleName.SYSTEM_CONCURRENCY
        return ConcurrencyCap(name, limit, SOURCE_SYSTEM, name in self._settings.shadow, "system")
