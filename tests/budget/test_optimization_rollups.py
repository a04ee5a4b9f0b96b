"""AnalyzeCostOptimization's rolled-up reads equal a direct computation over
the ledger, on random records at random instants and random ranges (whole
days, whole hours and the partial hours at the edges), SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import func, select

from services.budget.domain.usage import Outcome
from services.budget.store.models import UsageRow
from services.budget.store.optimization import load_system_hits
from tests.budget.conftest import T0
from tests.budget.test_optimization import put

OUTCOMES = list(Outcome)


def _ledger_hits(budget, start, end) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    u = UsageRow
    in_range = (u.created_at >= start, u.created_at < end)
    with budget.app.sessions.begin() as session:
        hits = session.scalar(
            select(func.count()).where(*in_range, u.cache_hit.in_(("exact", "similar")))
        )
        generated = session.scalar(
            select(func.count()).where(*in_range, u.outcome == Outcome.GENERATED.value)
        )
    return int(hits or 0), int(generated or 0)


def test_the_system_hit_counts_equal_the_ledgers(budget) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(11)
    origin = T0 - timedelta(days=3)
    for n in range(160):
        outcome = rng.choice(OUTCOMES)
        at = origin + timedelta(seconds=rng.randrange(4 * 24 * 3600))
        # A caller may flag a record cached without naming the kind of hit.
        odd = {"cached": True, "cache_hit": ""} if n % 17 == 0 else {}
        put(budget, f"u{n % 5}", at, outcome, recipe_id=f"r{n % 7}", **odd)
    spans = [(origin, origin + timedelta(days=4))] + [
        sorted(origin + timedelta(seconds=rng.randrange(4 * 24 * 3600)) for _ in range(2))
        for _ in range(12)
    ]
    for start, end in spans:
        with budget.app.sessions.begin() as session:
            fast = load_system_hits(session, start, end)
        assert fast == _ledger_hits(budget, start, end), (start, end)
