"""AnalyzeCostOptimization's system summary and setting groups (from the
system spend and outcomes rollups, migration 0015's measures) equal a direct
computation over the ledger, on random records at random instants, random
ranges and amended records, SQLite and PostgreSQL; and ReconcileLedger
reports each new measure of the spend rollup when it is corrupted."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from recipeimage.budget.v1 import budget_service_pb2 as pb
from sqlalchemy import func, select, text

from services.budget.domain.optimization import SettingGroup
from services.budget.domain.usage import (
    BreakdownRow,
    Outcome,
    OutcomeRow,
    Usage,
    UsageSummary,
    UsageTotals,
)
from services.budget.store.models import UsageRow
from services.budget.store.optimization import load_scope_rollup
from services.budget.store.unit_of_work import BudgetStore
from tests.budget.conftest import T0
from tests.budget.test_optimization import put

OUTCOMES = list(Outcome)
MODELS = ("gpt-image-2", "gpt-image-1.5")
SIZES = ("1024x1024", "1536x1024")
QUALITIES = ("low", "medium", "high")


def _ledger_summary(  # type: ignore[no-untyped-def]
    budget, start: datetime, end: datetime
) -> tuple[UsageSummary, list[SettingGroup]]:
    """Every user's summary and generated images by setting, straight from
    the ledger's records in [start, end)."""
    u = UsageRow
    in_range = (u.created_at >= start, u.created_at < end)
    measures = (
        func.count(),
        func.count().filter(u.success.is_(True)),
        func.coalesce(func.sum(u.cost_micros), 0),
        func.count().filter(u.cached.is_(True)),
        func.coalesce(func.sum(u.cost_saved_micros), 0),
    )
    with budget.app.sessions.begin() as session:
        total = session.execute(select(*measures, func.max(u.created_at)).where(*in_range)).one()
        fallback = session.scalar(
            select(func.count()).where(*in_range, u.outcome == Outcome.FALLBACK.value)
        )
        settings = session.execute(
            select(u.model, u.size, u.quality, *measures)
            .where(*in_range)
            .group_by(u.model, u.size, u.quality)
        ).all()
        outcomes = session.execute(
            select(u.outcome, func.count(), func.sum(u.cost_micros), func.sum(u.cost_saved_micros))
            .where(*in_range)
            .group_by(u.outcome)
        ).all()
        generated = session.execute(
            select(u.model, u.size, u.quality, func.count(), func.sum(u.cost_micros))
            .where(*in_range, u.outcome == Outcome.GENERATED.value)
            .group_by(u.model, u.size, u.quality)
            .order_by(u.model, u.size, u.quality)
        ).all()
    n, ok, cost, cached, saved, last_at = total
    totals = UsageTotals(n, int(cost), ok, n - ok, fallback or 0, last_at, cached, int(saved))
    breakdown = sorted(
        (BreakdownRow(m, s, q, g, y, int(c), h, int(v)) for m, s, q, g, y, c, h, v in settings),
        key=lambda r: (-r.cost_micros, -r.generations, r.model, r.size, r.quality),
    )
    by_outcome = sorted(
        (OutcomeRow(Outcome(o), g, int(c), int(v)) for o, g, c, v in outcomes),
        key=lambda r: (-r.cost_micros, -r.count, r.outcome.value),
    )
    groups = [SettingGroup(m, s, q, g, int(c)) for m, s, q, g, c in generated]
    return UsageSummary(totals, UsageTotals(), breakdown, by_outcome), groups


def _settle_abandoned(budget, rng: random.Random, at: datetime) -> None:  # type: ignore[no-untyped-def]
    """An abandoned record amended by the attempt's late commit."""
    base = {"request_id": f"late-{at.timestamp()}", "user_id": "u1", "created_at": at}
    setting = {"model": MODELS[0], "size": SIZES[1], "quality": "high"}
    with BudgetStore(budget.app.sessions).transaction() as tx:
        assert tx.usage.store_usage(Usage(outcome=Outcome.ABANDONED, **base, **setting))
    outcome = rng.choice((Outcome.GENERATED, Outcome.FAILED))
    settled = Usage(
        outcome=outcome,
        success=outcome is Outcome.GENERATED,
        cost_micros=rng.randrange(1_000, 90_000),
        **base,
        **setting,
    )
    with BudgetStore(budget.app.sessions).transaction() as tx:
        assert tx.usage.amend_abandoned(settled)


def test_the_system_summary_and_settings_equal_the_ledgers(budget) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(15)
    # Over two UTC months, so ranges read months, days, hours and edges.
    origin = T0 - timedelta(days=40)
    seconds = 45 * 24 * 3600
    for n in range(240):
        outcome = Outcome.GENERATED if n % 3 else rng.choice(OUTCOMES)
        at = origin + timedelta(seconds=rng.randrange(seconds))
        # A caller may flag a record cached without naming the kind of hit.
        odd = {"cached": True, "cache_hit": ""} if n % 17 == 0 else {}
        put(
            budget,
            f"u{n % 6}",
            at,
            outcome,
            model=rng.choice(MODELS),
            size=rng.choice(SIZES),
            quality=rng.choice(QUALITIES),
            cost_micros=rng.randrange(0, 90_000),
            cost_saved_micros=rng.randrange(0, 9_000) if outcome.cache_hit else 0,
            **odd,
        )
    for _ in range(5):
        _settle_abandoned(budget, rng, origin + timedelta(seconds=rng.randrange(seconds)))
    spans = [(origin, origin + timedelta(seconds=seconds))] + [
        sorted(origin + timedelta(seconds=rng.randrange(seconds)) for _ in range(2))
        for _ in range(14)
    ]
    spans.append((origin - timedelta(days=3), origin))  # nothing in it
    for start, end in spans:
        with budget.app.sessions.begin() as session:
            fast = load_scope_rollup(session, None, (start, end))
        assert fast == _ledger_summary(budget, start, end), (start, end)


def _spend_differences(budget, tokens) -> list[str]:  # type: ignore[no-untyped-def]
    result = budget.stub.ReconcileLedger(pb.ReconcileLedgerRequest(), metadata=tokens.admin())
    return [d.field for d in result.differences if d.field == "system_spend_rollup"]


@pytest.mark.parametrize("measure", ["successful", "cached", "generated", "generated_cost_micros"])
def test_reconciliation_reports_each_new_spend_measure(budget, tokens, measure: str) -> None:  # type: ignore[no-untyped-def]
    put(budget, "u1", T0 - timedelta(hours=3), Outcome.GENERATED, cost_micros=5_000)
    put(budget, "u2", T0 - timedelta(hours=2), Outcome.CACHE_HIT_EXACT)
    assert _spend_differences(budget, tokens) == []
    with budget.app.sessions.begin() as session:
        session.execute(
            text(
                f"UPDATE budget_system_spend SET {measure} = {measure} + 1 "
                "WHERE kind = 'day' AND quality = 'medium'"
            )
        )
    assert set(_spend_differences(budget, tokens)) == {"system_spend_rollup"}
