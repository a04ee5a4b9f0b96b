"""The whole system's usage summary and setting groups for cost optimization,
from the system rollups' facts (GetSystemMetrics' reads: the spend rollup by
model, size and quality, the outcomes rollup by outcome, the ledger's edges
by both). The same figures GetUsageStats' statement gives for every user,
in its order; facts of periods subtracted are negative, and groups they
cancel out are left out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from services.budget.domain.optimization import SettingGroup
from services.budget.domain.system_metrics import FactRow
from services.budget.domain.usage import (
    BreakdownRow,
    Outcome,
    OutcomeRow,
    UsageSummary,
    UsageTotals,
)

Setting = tuple[str, str, str]


def _by_setting(facts: Iterable[FactRow]) -> dict[Setting, list[int]]:
    """generations, successful, cost, cached, saved, generated, generated cost."""
    sums: dict[Setting, list[int]] = {}
    for f in facts:
        values = (
            f.generations,
            f.successful,
            f.cost_micros,
            f.cached,
            f.cost_saved_micros,
            f.generated,
            f.generated_cost_micros,
        )
        totals = sums.setdefault((f.model, f.size, f.quality), [0] * len(values))
        for n, value in enumerate(values):
            totals[n] += value
    return sums


def _by_outcome(facts: Iterable[FactRow]) -> dict[str, list[int]]:
    """generations, cost, saved, successful."""
    sums: dict[str, list[int]] = {}
    for f in facts:
        values = (f.generations, f.cost_micros, f.cost_saved_micros, f.successful)
        totals = sums.setdefault(f.outcome, [0] * len(values))
        for n, value in enumerate(values):
            totals[n] += value
    return sums


def system_summary(
    spend_facts: list[FactRow], outcome_facts: list[FactRow], last_at: datetime | None
) -> tuple[UsageSummary, list[SettingGroup]]:
    """Every user's summary of a range whose records are outcome_facts (by
    outcome) and again spend_facts (by model, size and quality), and its
    generated images by setting. last_at: the range's latest record."""
    settings = _by_setting(spend_facts)
    outcomes = _by_outcome(outcome_facts)
    generations = sum(values[0] for values in outcomes.values())
    successful = sum(values[3] for values in outcomes.values())
    totals = UsageTotals(
        generations=generations,
        cost_micros=sum(values[1] for values in outcomes.values()),
        successful=successful,
        failed=generations - successful,
        fallback=outcomes.get(Outcome.FALLBACK.value, [0])[0],
        last_at=last_at if generations else None,
        cache_hits=sum(values[3] for values in settings.values()),
        cost_saved_micros=sum(values[2] for values in outcomes.values()),
    )
    breakdown = sorted(
        (
            BreakdownRow(model, size, quality, n, ok, cost, cached, saved)
            for (model, size, quality), (n, ok, cost, cached, saved, *_) in settings.items()
            if n
        ),
        key=lambda r: (-r.cost_micros, -r.generations, r.model, r.size, r.quality),
    )
    by_outcome = sorted(
        (
            OutcomeRow(Outcome(name), n, cost, saved)
            for name, (n, cost, saved, _) in outcomes.items()
            if n
        ),
        key=lambda r: (-r.cost_micros, -r.count, r.outcome.value),
    )
    groups = [
        SettingGroup(model, size, quality, values[5], values[6])
        for (model, size, quality), values in sorted(settings.items())
        if values[5]
    ]
    return UsageSummary(totals, UsageTotals(), breakdown, by_outcome), groups
