"""Users near their limits (ListUsersNearLimits). Plain Python.

A window's share is (spent + reserved) * 10000 / effective limit, in basis
points rounded down, where the effective limit is the one ReserveBudget
enforces now: the tier's limit or an admin's override, lowered by the user's
cap, plus the window's active credits. A window whose effective limit is zero
admits nothing: its share is 10000. A user's share is that of its fullest
window (its current day or month).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.budget.domain.limits import Tier
from services.budget.domain.windows import Span

BASIS_POINTS = 10_000
# A share up to 100 times the limit can be asked for (overruns go above 1).
MAX_SHARE_BASIS_POINTS = 100 * BASIS_POINTS


@dataclass(frozen=True)
class NearLimit:
    user_id: str
    tier: Tier
    span: Span
    share_basis_points: int
    spent_micros: int
    reserved_micros: int
    effective_limit_micros: int
    credit_micros: int


@dataclass(frozen=True)
class NearLimitsPage:
    users: list[NearLimit]
    next_page_token: str
