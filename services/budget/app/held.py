"""Money and reservations held now, for the monitoring gauges: one read-only
query, run when Prometheus scrapes, never on a request's path."""

from __future__ import annotations

from services.budget.store.unit_of_work import BudgetStore

HELD_RESERVATIONS = "recipeimage_reservations_held"
HELD_MICROS = "recipeimage_held_micros"

HELD_GAUGES = {
    HELD_RESERVATIONS: "Reservations held now (generations in flight), all users.",
    HELD_MICROS: "Micro-dollars held now by reservations not yet committed or released.",
}


class HeldNow:
    def __init__(self, store: BudgetStore) -> None:
        self._store = store

    def read(self) -> dict[str, float]:
        with self._store.transaction() as tx:
            count, micros = tx.reservations.held_totals()
        return {HELD_RESERVATIONS: count, HELD_MICROS: micros}
