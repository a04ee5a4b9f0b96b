"""ListUsersNearLimits: users at or above a share of an effective limit now,
fullest first, paged (AIP-158); the database computes every share."""

from __future__ import annotations

from collections.abc import Mapping

from services.budget.app.paging import Pager
from services.budget.domain.limits import LimitPolicy, Tier
from services.budget.domain.near_limits import MAX_SHARE_BASIS_POINTS, NearLimitsPage
from services.budget.domain.validation import Violations
from services.budget.domain.windows import Span, period_of
from services.budget.store.unit_of_work import BudgetStore
from services.common.clock import Clock


def _after(position: Mapping[str, object]) -> tuple[int, str]:
    return int(str(position["s"])), str(position["u"])


class NearLimits:
    def __init__(self, store: BudgetStore, clock: Clock, policy: LimitPolicy, pager: Pager) -> None:
        self._store = store
        self._clock = clock
        self._policy = policy
        self._pager = pager

    def list_users(self, min_share: int, page_size: int, page_token: str) -> NearLimitsPage:
        violations = Violations()
        if not 1 <= min_share <= MAX_SHARE_BASIS_POINTS:
            violations.add(
                "min_share_basis_points", f"required: 1 to {MAX_SHARE_BASIS_POINTS} (8000 = 80%)"
            )
        page = self._pager.open(violations, page_size, page_token, {"min_share": min_share})
        after = page.after(violations, _after)
        violations.raise_if_any()
        now = self._clock.now()
        zone = self._policy.zone
        with self._store.transaction() as tx:
            found = tx.near_limits.load_page(
                tiers={tier: self._policy.tier_limits(tier) for tier in Tier},
                default_tier=self._policy.default_tier,
                day=period_of(Span.DAY, now, zone).start_date,
                month=period_of(Span.MONTH, now, zone).start_date,
                now=now,
                min_share=min_share,
                after=after,
                limit=page.fetch_limit,
            )
        kept, token = self._pager.close(
            page, found, lambda user: {"s": user.share_basis_points, "u": user.user_id}
        )
        return NearLimitsPage(kept, token)
