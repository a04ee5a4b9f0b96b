"""The QuotaExceeded a reservation is refused with: which limit, how full its
window is, and when it resets."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from services.budget.domain.limits import PER_GENERATION_LIMIT_EXCEEDED, Limit, WindowLimit
from services.budget.domain.reservations import Counters, WindowState
from services.budget.domain.windows import Scope, Span, day_of
from services.common.errors import QuotaExceeded


def window_refusal(
    window: WindowLimit, counters: Counters, amount: int, now: datetime, credit_micros: int = 0
) -> QuotaExceeded:
    """limit_micros is the effective limit: the window's own plus its active
    credits (credit_micros, also in the metadata)."""
    key = window.key
    limit = window.limit_micros + credit_micros
    whose = f"user {key.subject}" if key.scope is Scope.USER else "the system"
    span = "daily" if key.span is Span.DAY else "monthly"
    return QuotaExceeded(
        f"{whose}'s {span} limit would be exceeded: limit {limit}, spent "
        f"{counters.spent_micros}, reserved {counters.reserved_micros}, requested {amount} "
        f"micro-USD; the window resets at {window.period.end.isoformat()}",
        reason=window.reason,
        subject=f"user:{key.subject}" if key.scope is Scope.USER else "system",
        retry_after=window.period.end - now,
        metadata={
            "limit_micros": str(limit),
            "spent_micros": str(counters.spent_micros),
            "reserved_micros": str(counters.reserved_micros),
            "requested_micros": str(amount),
            "window": key.name,
            "limit_source": window.source,
            **({"credit_micros": str(credit_micros)} if credit_micros else {}),
        },
    )


def per_generation_refusal(
    user_id: str, limit: Limit, amount: int, now: datetime, zone: ZoneInfo
) -> QuotaExceeded:
    # Waiting does not lift this limit; RetryInfo (always sent) points at the
    # next day so a client that obeys it blindly does not spin.
    return QuotaExceeded(
        f"{amount} micro-USD is above the per-generation limit of {limit.micros} "
        f"(set by {limit.source})",
        reason=PER_GENERATION_LIMIT_EXCEEDED,
        subject=f"user:{user_id}",
        retry_after=day_of(now, zone).end - now,
        metadata={
            "limit_micros": str(limit.micros),
            "spent_micros": "0",
            "reserved_micros": "0",
            "requested_micros": str(amount),
            "window": "per_generation",
            "limit_source": limit.source,
        },
    )


def money_refusal(
    user_id: str,
    per_generation: Limit,
    windows: list[WindowState],
    amount: int,
    now: datetime,
    zone: ZoneInfo,
) -> QuotaExceeded | None:
    """ReserveBudget's refusal of `amount` for money, None when it fits: the
    per-generation limit, then the first window (in lock order) without room."""
    if amount > per_generation.micros:
        return per_generation_refusal(user_id, per_generation, amount, now, zone)
    for state in windows:
        if not state.admits(amount):
            window = WindowLimit(state.key, state.limit_micros, state.source, state.period)
            counters = Counters(state.spent_micros, state.reserved_micros, state.overrun_micros)
            return window_refusal(window, counters, amount, now)
    return None
