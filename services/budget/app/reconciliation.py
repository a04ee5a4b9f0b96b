"""ReconcileLedger (and the reconcile command): prove the window counters,
the reservations and the rollups equal the ledger, and say where they do
not. Read-only; every check reads one snapshot, so a busy service cannot show
a difference that is only a commit in flight."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from services.budget.domain.reconciliation import (
    MAX_DIFFERENCES,
    CheckedRange,
    Difference,
    Reconciliation,
)
from services.budget.domain.windows import Scope, Span
from services.budget.store.unit_of_work import BudgetStore


class Reconciler:
    def __init__(self, store: BudgetStore, zone: ZoneInfo) -> None:
        self._store = store
        self.zone = zone

    def run(self, since: datetime | None = None) -> Reconciliation:
        """Check windows beginning on or after since's local date (all: None)."""
        checked = CheckedRange.starting(since, self.zone)
        with self._store.snapshot() as queries:
            differences: list[Difference] = []
            for scope in Scope:
                for span in Span:
                    differences += queries.window_differences(checked, scope, span)
            differences += queries.reservation_differences(checked)
            differences += queries.unreserved_spend(checked)
            differences += queries.rollup_differences(checked)
            differences += queries.credit_differences(checked)
            differences += queries.system_rollup_differences(checked)
            windows, reservations = queries.counts(checked)
        return Reconciliation(
            windows_checked=windows,
            reservations_checked=reservations,
            differences=differences[:MAX_DIFFERENCES],
            truncated=len(differences) > MAX_DIFFERENCES,
        )
