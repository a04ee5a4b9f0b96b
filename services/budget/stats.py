"""Usage statistics and the pages of a user's ledger, computed by the database
(aggregates and keyset pages over one user's index range, never rows loaded
into memory)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import sessionmaker

from services.budget.domain import Usage
from services.budget.usage_repository import (
    BreakdownRow,
    Cursor,
    OutcomeRow,
    UsageRepository,
    UsageSummary,
)
from services.budget.validation import Violations
from services.budget.windows import Period, day_of, month_of, week_of
from services.common import paging
from services.common.auth import Principal
from services.common.clock import Clock

MAX_RANGE = timedelta(days=366)
MAX_ZONE_CHARS = 64


class StatsPeriod(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    RANGE = "range"


@dataclass(frozen=True)
class UsageStats:
    user_id: str
    period: StatsPeriod
    span: Period
    time_zone: str
    total_generations: int
    total_cost_micros: int
    successful_generations: int
    failed_generations: int
    fallback_generations: int
    average_cost_per_generation_micros: int
    last_generation_at: datetime | None
    monthly_usage: int
    monthly_cost_micros: int
    cache_hits: int
    cost_saved_micros: int
    breakdown: list[BreakdownRow]
    outcomes: list[OutcomeRow]


@dataclass(frozen=True)
class UsagePage:
    records: list[Usage]
    next_page_token: str


_PERIODS = {StatsPeriod.DAY: day_of, StatsPeriod.WEEK: week_of, StatsPeriod.MONTH: month_of}


def parse_zone(violations: Violations, name: str, default: ZoneInfo) -> ZoneInfo:
    if not name.strip():
        return default
    if len(name) > MAX_ZONE_CHARS:
        violations.add("time_zone", f"at most {MAX_ZONE_CHARS} characters")
        return default
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        violations.add("time_zone", "not an IANA time zone (e.g. UTC, Europe/Berlin)")
        return default


class Stats:
    def __init__(self, sessions: sessionmaker, clock: Clock, zone: ZoneInfo) -> None:
        self._sessions = sessions
        self._clock = clock
        self._zone = zone

    def usage(
        self,
        principal: Principal,
        user_id: str,
        period: StatsPeriod | None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        time_zone: str = "",
    ) -> UsageStats:
        violations = Violations()
        user_id = violations.acting_for(principal, user_id)
        zone = parse_zone(violations, time_zone, self._zone)
        now = self._clock.now()
        span = self._span(violations, period, start, end, now, zone)
        violations.raise_if_any()
        assert period is not None and span is not None
        month = month_of(now, zone)
        with self._sessions.begin() as session:
            summary = UsageRepository(session).summary(
                user_id, span.start, span.end, (month.start, month.end)
            )
        return _stats(user_id, period, span, zone, summary)

    @staticmethod
    def _span(
        violations: Violations,
        period: StatsPeriod | None,
        start: datetime | None,
        end: datetime | None,
        now: datetime,
        zone: ZoneInfo,
    ) -> Period | None:
        if period is None:
            violations.add("period", "required: DAY, WEEK, MONTH or RANGE")
            return None
        if period is not StatsPeriod.RANGE:
            for name, value in (("start_time", start), ("end_time", end)):
                if value is not None:
                    violations.add(name, "only with period RANGE")
            return _PERIODS[period](now, zone)
        for name, value in (("start_time", start), ("end_time", end)):
            if value is None:
                violations.add(name, "required with period RANGE")
        if start is None or end is None:
            return None
        if end <= start:
            violations.add("end_time", "must be after start_time")
        elif end - start > MAX_RANGE:
            violations.add("end_time", "a range is at most 366 days")
        return Period(start.astimezone(zone).date(), start, end)

    def list_usage(
        self,
        principal: Principal,
        user_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> UsagePage:
        violations = Violations()
        user_id = violations.acting_for(principal, user_id)
        size = paging.page_size(violations, page_size)
        if start is not None and end is not None and end <= start:
            violations.add("end_time", "must be after start_time")
        query = {"user_id": user_id, "start": start, "end": end}
        position = paging.decode(violations, page_token, query)
        after = None
        if position is not None:
            try:
                after = Cursor(datetime.fromisoformat(str(position["c"])), int(position["i"]))
            except (KeyError, TypeError, ValueError):
                violations.add("page_token", "not a page token this service issued")
        violations.raise_if_any()
        with self._sessions.begin() as session:
            rows = UsageRepository(session).page(
                user_id, after=after, limit=size + 1, start=start, end=end
            )
        token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1][1]
            token = paging.encode({"c": last.created_at.isoformat(), "i": last.id}, query)
        return UsagePage([usage for usage, _ in rows], token)


def _stats(
    user_id: str, period: StatsPeriod, span: Period, zone: ZoneInfo, summary: UsageSummary
) -> UsageStats:
    totals, month = summary.period, summary.month
    return UsageStats(
        user_id=user_id,
        period=period,
        span=span,
        time_zone=zone.key,
        total_generations=totals.generations,
        total_cost_micros=totals.cost_micros,
        successful_generations=totals.successful,
        failed_generations=totals.failed,
        fallback_generations=totals.fallback,
        average_cost_per_generation_micros=(
            totals.cost_micros // totals.generations if totals.generations else 0
        ),
        last_generation_at=totals.last_at,
        monthly_usage=month.generations,
        monthly_cost_micros=month.cost_micros,
        cache_hits=totals.cache_hits,
        cost_saved_micros=totals.cost_saved_micros,
        breakdown=summary.breakdown,
        outcomes=sorted(
            summary.outcomes, key=lambda row: list(type(row.outcome)).index(row.outcome)
        ),
    )
