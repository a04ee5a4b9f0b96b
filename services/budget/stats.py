"""Usage statistics over calendar periods, computed by the database (aggregates,
never rows loaded into memory)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import sessionmaker

from services.budget.repository import Repository
from services.budget.validation import Violations
from services.budget.windows import Period, day_of, month_of, week_of
from services.common.auth import Principal
from services.common.clock import Clock


class StatsPeriod(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class UsageStats:
    user_id: str
    period: StatsPeriod
    span: Period
    total_generations: int
    total_cost_micros: int
    successful_generations: int
    failed_generations: int
    average_cost_per_generation_micros: int
    last_generation_at: datetime | None
    monthly_usage: int
    monthly_cost_micros: int
    cache_hits: int
    cost_saved_micros: int


_PERIODS = {StatsPeriod.DAY: day_of, StatsPeriod.WEEK: week_of, StatsPeriod.MONTH: month_of}


class Stats:
    def __init__(self, sessions: sessionmaker, clock: Clock, zone: ZoneInfo) -> None:
        self._sessions = sessions
        self._clock = clock
        self._zone = zone

    def usage(self, principal: Principal, user_id: str, period: StatsPeriod | None) -> UsageStats:
        violations = Violations()
        user_id = violations.acting_for(principal, user_id)
        if period is None:
            violations.add("period", "required: DAY, WEEK or MONTH")
        violations.raise_if_any()
        assert period is not None
        now = self._clock.now()
        span = _PERIODS[period](now, self._zone)
        month = month_of(now, self._zone)
        with self._sessions.begin() as session:
            totals = Repository(session).usage_totals(user_id, span, month)
        return UsageStats(
            user_id=user_id,
            period=period,
            span=span,
            total_generations=totals.generations,
            total_cost_micros=totals.cost_micros,
            successful_generations=totals.successful,
            failed_generations=totals.failed,
            average_cost_per_generation_micros=(
                totals.cost_micros // totals.generations if totals.generations else 0
            ),
            last_generation_at=totals.last_at,
            monthly_usage=totals.month_generations,
            monthly_cost_micros=totals.month_cost_micros,
            cache_hits=totals.cache_hits,
            cost_saved_micros=totals.cost_saved_micros,
        )
