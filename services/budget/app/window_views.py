"""The windows of users as they stand now: each window's effective limit
(tier, an admin's override, the user's cap, the system limits: LimitPolicy)
with its counters and its active credits. GetLimits and CheckBudget read one
user's; the alert evaluator many users' at once, with the same code."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.budget.domain.credits import active_credit
from services.budget.domain.limits import LimitPolicy, LimitValues, UserSettings, WindowLimit
from services.budget.domain.reservations import Counters, LimitsView, WindowState
from services.budget.domain.windows import Scope
from services.budget.store.unit_of_work import Transaction


def limits_views(
    tx: Transaction,
    policy: LimitPolicy,
    users: Sequence[UserSettings],
    system: LimitValues,
    now: datetime,
) -> list[LimitsView]:
    """Each user's view, in the order given: one query for all of them
    (the counters and the credits of every window)."""
    found = []
    for user in users:
        limits = policy.effective(user, system)
        found.append((user, limits, policy.windows(limits, now)))
    keys = list(dict.fromkeys(w.key for _, _, windows in found for w in windows))
    counters, credits = tx.credits.load_counters_and_credits(keys, policy.zone)
    return [
        LimitsView(
            user_id=user.user_id,
            tier=limits.tier,
            per_generation=limits.per_generation,
            windows=[
                window_state(w, counters[w.key], active_credit(credits, w.key, now))
                for w in windows
            ],
            overrides=user.overrides,
            cap=user.cap,
            credits=[
                c for c in credits if c.key.scope is Scope.USER and c.key.subject == user.user_id
            ],
            as_of=now,
        )
        for user, limits, windows in found
    ]


def window_state(window: WindowLimit, counters: Counters, credit_micros: int) -> WindowState:
    return WindowState(
        key=window.key,
        limit_micros=window.limit_micros,
        spent_micros=counters.spent_micros,
        reserved_micros=counters.reserved_micros,
        source=window.source,
        period=window.period,
        overrun_micros=counters.overrun_micros,
        credit_micros=credit_micros,
    )
