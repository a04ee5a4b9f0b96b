"""AnalyzeCostOptimization: a scope's range read in one transaction, then
priced with the price table by the domain (services.budget.domain.optimization)."""

from __future__ import annotations

from datetime import datetime

from services.budget.domain.optimization import Analysis, Scope, analysis_range, analyze
from services.budget.domain.validation import Violations
from services.budget.store.unit_of_work import BudgetStore
from services.common.clock import Clock
from services.common.prices import PriceTable


class Optimization:
    def __init__(self, store: BudgetStore, clock: Clock, prices: PriceTable) -> None:
        self._store = store
        self._clock = clock
        self._prices = prices

    def analyze(
        self,
        user_id: str,
        scope: Scope,
        violations: Violations,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Analysis:
        """One user's usage (scope USER), or every user's (SYSTEM, user_id "")."""
        start, end = analysis_range(violations, start, end, self._clock.now())
        violations.raise_if_any()
        subject = user_id if scope is Scope.USER else None
        with self._store.transaction() as tx:
            facts = tx.optimization.load_facts(subject, start, end)
        return analyze(user_id, scope, start, end, facts, self._prices)
