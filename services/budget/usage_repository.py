"""Persistence of the usage ledger: appending records, and the queries behind
GetUsageStats and ListUsage. Every method runs in the session it is given.

Every read is bounded to one user and one time range, which is exactly the
leading (user_id, created_at, id) of the ledger's index; on PostgreSQL the
index also carries the aggregated columns, so stats are an index-only scan of
that user's range, however large the ledger grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import literal, select, tuple_
from sqlalchemy.orm import Session

from services.budget.domain import Outcome, Usage
from services.budget.models import AutoId, UsageRow
from services.budget.statements import (
    PART_BREAKDOWN,
    PART_MONTH,
    PART_TOTAL,
    statements,
    usage_summary,
)
from services.common.db import UtcDateTime


@dataclass(frozen=True)
class UsageTotals:
    generations: int = 0
    cost_micros: int = 0
    successful: int = 0
    failed: int = 0
    fallback: int = 0
    last_at: datetime | None = None
    cache_hits: int = 0
    cost_saved_micros: int = 0


@dataclass(frozen=True)
class BreakdownRow:
    model: str
    size: str
    quality: str
    generations: int
    successful: int
    cost_micros: int
    cache_hits: int
    cost_saved_micros: int


@dataclass(frozen=True)
class OutcomeRow:
    outcome: Outcome
    count: int
    cost_micros: int
    cost_saved_micros: int


@dataclass(frozen=True)
class UsageSummary:
    period: UsageTotals
    month: UsageTotals
    breakdown: list[BreakdownRow]
    outcomes: list[OutcomeRow]


@dataclass(frozen=True)
class Cursor:
    """Where a page of a user's records ends: (created_at, id), newest first."""

    created_at: datetime
    id: int


_USAGE_FIELDS = (
    "request_id",
    "user_id",
    "recipe_id",
    "prompt",
    "prompt_length",
    "size",
    "quality",
    "model",
    "provider",
    "cost_micros",
    "success",
    "error_message",
    "fallback_used",
    "generation_time_ms",
    "cached",
    "cache_hit",
    "cost_saved_micros",
    "input_tokens",
    "output_tokens",
    "created_at",
)


def _exact(value: object) -> int:
    """SUM over BIGINT is NUMERIC on PostgreSQL: int() keeps it exact."""
    return int(value or 0)  # type: ignore[call-overload]


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


class UsageRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def insert(self, usage: Usage) -> bool:
        """Append a usage record; False (and nothing written) when its request_id exists."""
        statement = statements(self.session.get_bind().dialect.name).insert_usage
        return self.session.execute(statement, _usage_values(usage)).first() is not None

    def by_request_id(self, request_id: str) -> Usage | None:
        row = self.session.scalar(select(UsageRow).where(UsageRow.request_id == request_id))
        return _usage(row) if row else None

    def summary(
        self, user_id: str, start: datetime, end: datetime, month: tuple[datetime, datetime]
    ) -> UsageSummary:
        """The period's totals, breakdown by model, size and quality, and by
        outcome, and the month's totals: one statement, one snapshot."""
        params = {
            "user_id": user_id,
            **rollup_split("p_", start, end),
            **rollup_split("m_", *month),
        }
        rows = self.session.execute(usage_summary(), params).all()
        totals = {PART_TOTAL: UsageTotals(), PART_MONTH: UsageTotals()}
        breakdown, outcomes = [], []
        for row in rows:
            if row.part in totals:
                generations = _exact(row.generations)
                totals[row.part] = UsageTotals(
                    generations=generations,
                    cost_micros=_exact(row.cost),
                    successful=_exact(row.successful),
                    failed=generations - _exact(row.successful),
                    fallback=_exact(row.fallback),
                    last_at=row.last_at,
                    cache_hits=_exact(row.cache_hits),
                    cost_saved_micros=_exact(row.saved),
                )
            elif row.part == PART_BREAKDOWN:
                breakdown.append(
                    BreakdownRow(
                        model=row.model,
                        size=row.size,
                        quality=row.quality,
                        generations=_exact(row.generations),
                        successful=_exact(row.successful),
                        cost_micros=_exact(row.cost),
                        cache_hits=_exact(row.cache_hits),
                        cost_saved_micros=_exact(row.saved),
                    )
                )
            else:
                outcomes.append(
                    OutcomeRow(
                        Outcome(row.outcome),
                        _exact(row.generations),
                        _exact(row.cost),
                        _exact(row.saved),
                    )
                )
        return UsageSummary(totals[PART_TOTAL], totals[PART_MONTH], breakdown, outcomes)

    def page(
        self,
        user_id: str,
        *,
        after: Cursor | None,
        limit: int,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[tuple[Usage, Cursor]]:
        """Up to limit of the user's records, newest first, after the cursor."""
        statement = select(UsageRow).where(UsageRow.user_id == user_id)
        if start is not None:
            statement = statement.where(UsageRow.created_at >= start)
        if end is not None:
            statement = statement.where(UsageRow.created_at < end)
        if after is not None:
            # A row-value comparison: an index range, however deep the page.
            statement = statement.where(
                tuple_(UsageRow.created_at, UsageRow.id)
                < tuple_(literal(after.created_at, UtcDateTime()), literal(after.id, AutoId))
            )
        statement = statement.order_by(UsageRow.created_at.desc(), UsageRow.id.desc()).limit(limit)
        return [
            (_usage(row), Cursor(row.created_at, row.id)) for row in self.session.scalars(statement)
        ]


def _usage_values(usage: Usage) -> dict[str, object]:
    if usage.outcome is None or usage.created_at is None:
        raise ValueError("a stored usage record needs an outcome and a created_at")
    values: dict[str, object] = {name: getattr(usage, name) for name in _USAGE_FIELDS}
    values["outcome"] = usage.outcome.value
    values["reservation_id"] = usage.reservation_id or None
    return values


def _usage(row: UsageRow) -> Usage:
    values = {name: getattr(row, name) for name in _USAGE_FIELDS}
    return Usage(
        **values,
        outcome=Outcome(row.outcome),
        reservation_id=row.reservation_id or "",
    )
