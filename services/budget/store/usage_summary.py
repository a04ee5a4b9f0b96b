"""GetUsageStats' one statement: a range's totals, the month's totals, and the
range by model, size and quality and by outcome, read from the daily rollup
for whole UTC days and from the ledger's covering index for the partial days
at the edges. One statement: one round trip, one snapshot."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    Executable,
    Row,
    Select,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from services.budget.domain.usage import (
    BreakdownRow,
    Outcome,
    OutcomeRow,
    UsageSummary,
    UsageTotals,
)
from services.budget.store.models import UsageDailyRow, UsageRow, table

USAGE = table(UsageRow)
DAILY = table(UsageDailyRow)

# The parts of a usage summary (the "part" column of its rows).
PART_TOTAL, PART_MONTH, PART_BREAKDOWN, PART_OUTCOME = "1 total", "2 month", "3 model", "4 outcome"
_KINDS = ("model", "size", "quality", "outcome")


def _edge(prefix: str, start: str, end: str, everyone: bool) -> Select[Any]:
    """The ledger's records of a partial day, [start, end), pre-aggregated."""
    u = USAGE.c
    statement = (
        select(
            u.model,
            u.size,
            u.quality,
            u.outcome,
            func.count(),
            func.sum(u.cost_micros),
            func.count().filter(u.success.is_(True)),
            func.count().filter(u.cached.is_(True)),
            func.sum(u.cost_saved_micros),
            func.max(u.created_at),
        )
        .where(
            u.created_at >= bindparam(f"{prefix}{start}"),
            u.created_at < bindparam(f"{prefix}{end}"),
        )
        .group_by(u.model, u.size, u.quality, u.outcome)
    )
    return statement if everyone else statement.where(u.user_id == bindparam("user_id"))


def range_facts(prefix: str, everyone: bool = False) -> CTE:
    """A range's usage as pre-aggregated rows by model, size, quality and
    outcome: whole UTC days [d0, d1) from the rollup, and the partial days at
    the edges, [h0, h1) and [t0, t1), from the ledger, each one index range.
    One user's (bindparam user_id), or everyone's."""
    d = DAILY.c
    rolled = select(
        d.model,
        d.size,
        d.quality,
        d.outcome,
        d.generations.label("generations"),
        d.cost_micros.label("cost"),
        d.successful.label("successful"),
        d.cache_hits.label("cache_hits"),
        d.cost_saved_micros.label("saved"),
        d.last_at.label("last_at"),
    ).where(
        d.day >= bindparam(f"{prefix}d0"),
        d.day < bindparam(f"{prefix}d1"),
    )
    if not everyone:
        rolled = rolled.where(d.user_id == bindparam("user_id"))
    edges = (_edge(prefix, "h0", "h1", everyone), _edge(prefix, "t0", "t1", everyone))
    return union_all(rolled, *edges).cte(f"{prefix}facts")


def _summary_part(part: str, facts: CTE, group: tuple[str, ...]) -> Select[Any]:
    """One aggregate of a range's facts, grouped by group. A union's columns
    must line up, so the kinds not grouped by are typed NULLs."""
    c = facts.c

    def kind(name: str) -> Any:
        column = c[name]
        return (column if name in group else cast(null(), column.type)).label(name)

    return (
        select(
            literal(part).label("part"),
            *(kind(name) for name in _KINDS),
            func.sum(c.generations).label("generations"),
            func.sum(c.cost).label("cost"),
            func.sum(c.successful).label("successful"),
            func.sum(case((c.outcome == "fallback", c.generations), else_=0)).label("fallback"),
            func.max(c.last_at).label("last_at"),
            func.sum(c.cache_hits).label("cache_hits"),
            func.sum(c.saved).label("saved"),
        )
        .select_from(facts)
        .group_by(*(c[name] for name in group))
    )


@functools.cache
def _usage_summary(everyone: bool = False) -> Executable:
    """Parameters: user_id (unless everyone), and for the period (p_) and the
    month (m_) the rollup days d0, d1 and the edges h0, h1, t0, t1 (see
    rollup_split)."""
    period, month = range_facts("p_", everyone), range_facts("m_", everyone)
    return union_all(
        _summary_part(PART_TOTAL, period, ()),
        _summary_part(PART_MONTH, month, ()),
        _summary_part(PART_BREAKDOWN, period, ("model", "size", "quality")),
        _summary_part(PART_OUTCOME, period, ("outcome",)),
    ).order_by(
        literal_column("part"),
        literal_column("cost").desc(),
        literal_column("generations").desc(),
        *(literal_column(name) for name in _KINDS),
    )


def _utc_midnight(instant: datetime, *, up: bool) -> datetime:
    midnight = datetime.combine(instant.astimezone(UTC).date(), time(0), tzinfo=UTC)
    return midnight + timedelta(days=1) if up and midnight < instant else midnight


def rollup_split(prefix: str, start: datetime, end: datetime) -> dict[str, object]:
    """[start, end) as whole UTC days [d0, d1) read from the rollup, and the
    partial days before and after them, [h0, h1) and [t0, t1), read from the
    ledger. A range within one day is all edge."""
    first, last = _utc_midnight(start, up=True), _utc_midnight(end, up=False)
    if first < last:
        days, head, tail = (first.date(), last.date()), (start, first), (last, end)
    else:
        days, head, tail = (first.date(), first.date()), (start, end), (end, end)
    return {
        f"{prefix}d0": days[0],
        f"{prefix}d1": days[1],
        f"{prefix}h0": head[0],
        f"{prefix}h1": head[1],
        f"{prefix}t0": tail[0],
        f"{prefix}t1": tail[1],
    }


def _exact(value: Any) -> int:
    """SUM over BIGINT is NUMERIC on PostgreSQL (a Decimal): int() keeps it exact."""
    return int(value or 0)


def _totals(row: Row[Any]) -> UsageTotals:
    generations = _exact(row.generations)
    return UsageTotals(
        generations=generations,
        cost_micros=_exact(row.cost),
        successful=_exact(row.successful),
        failed=generations - _exact(row.successful),
        fallback=_exact(row.fallback),
        last_at=row.last_at,
        cache_hits=_exact(row.cache_hits),
        cost_saved_micros=_exact(row.saved),
    )


def _breakdown(row: Row[Any]) -> BreakdownRow:
    return BreakdownRow(
        model=row.model,
        size=row.size,
        quality=row.quality,
        generations=_exact(row.generations),
        successful=_exact(row.successful),
        cost_micros=_exact(row.cost),
        cache_hits=_exact(row.cache_hits),
        cost_saved_micros=_exact(row.saved),
    )


def _outcome(row: Row[Any]) -> OutcomeRow:
    return OutcomeRow(
        Outcome(row.outcome), _exact(row.generations), _exact(row.cost), _exact(row.saved)
    )


def load_usage_summary(
    session: Session,
    user_id: str | None,
    span: tuple[datetime, datetime],
    month: tuple[datetime, datetime],
) -> UsageSummary:
    """The span's totals, breakdown by model, size and quality, and by
    outcome, and the month's totals: of one user, or (user_id None) of every
    user."""
    params = {"user_id": user_id, **rollup_split("p_", *span), **rollup_split("m_", *month)}
    totals = {PART_TOTAL: UsageTotals(), PART_MONTH: UsageTotals()}
    breakdown, outcomes = [], []
    for row in session.execute(_usage_summary(user_id is None), params):
        if row.part in totals:
            totals[row.part] = _totals(row)
        elif row.part == PART_BREAKDOWN:
            breakdown.append(_breakdown(row))
        else:
            outcomes.append(_outcome(row))
    return UsageSummary(totals[PART_TOTAL], totals[PART_MONTH], breakdown, outcomes)
