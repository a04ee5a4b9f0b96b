"""GetSystemMetrics and ListTopUsers: every user's figures over a range, and
the top users of a UTC day or month, read from the rollups the ledger's
triggers keep (never by scanning the ledger)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from services.budget.app.paging import Pager
from services.budget.domain.system_metrics import (
    FactRow,
    SystemMetrics,
    TopUsersCursor,
    TopUsersOrder,
    TopUsersPage,
    TopUsersSpan,
    TrendPlan,
    figure_parts,
    top_users_period,
    trend_points,
)
from services.budget.domain.usage import StatsPeriod
from services.budget.domain.validation import Violations
from services.budget.store.unit_of_work import BudgetStore
from services.common.clock import Clock


def _totals(facts: list[FactRow]) -> tuple[int, int]:
    return sum(f.generations for f in facts), sum(f.cost_micros for f in facts)


def _after(position: Mapping[str, object]) -> TopUsersCursor:
    return TopUsersCursor(
        int(str(position["v"])),
        str(position["u"]),
        int(str(position["r"])),
        datetime.fromisoformat(str(position["t"])),
    )


class SystemMetricsReports:
    def __init__(self, store: BudgetStore, clock: Clock, zone: ZoneInfo, pager: Pager) -> None:
        self._store = store
        self._clock = clock
        self._zone = zone
        self._pager = pager

    def metrics(
        self,
        period: StatsPeriod | None,
        violations: Violations,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        time_zone: str = "",
    ) -> SystemMetrics:
        zone = violations.time_zone(time_zone, self._zone)
        span = violations.stats_span(period, start, end, self._clock.now(), zone)
        violations.raise_if_any()
        assert span is not None
        parts_read = figure_parts(span.start, span.end)
        granularity, points = trend_points(span.start, span.end, zone)
        plan = TrendPlan.of(points, parts_read)
        with self._store.transaction() as tx:
            queries = tx.system_metrics
            queries.read_one_snapshot()
            parts = queries.load_facts(parts_read)
            days, hours = queries.load_trend_totals(plan.day_starts, plan.hour_starts)
        edges = parts["head"] + parts["tail"]
        trend = plan.fold(days, hours, (_totals(parts["head"]), _totals(parts["tail"])))
        return SystemMetrics.of(
            span,
            zone.key,
            outcome_facts=parts["outcomes"] + edges,
            spend_facts=parts["spend"] + edges,
            granularity=granularity,
            trend=trend,
        )

    def top_users(
        self,
        span: TopUsersSpan | None,
        order: TopUsersOrder,
        violations: Violations,
        *,
        at: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> TopUsersPage:
        if span is None:
            violations.add("period", "required: DAY or MONTH")
        # Unset `at` is now: a later page stays in the period its first page
        # ranked (the token carries it), even after midnight.
        query = {"span": str(span), "order": order.value, "at": at.isoformat() if at else ""}
        page = self._pager.open(violations, page_size, page_token, query)
        after = page.after(violations, _after)
        violations.raise_if_any()
        assert span is not None
        period = top_users_period(span, after.period_start if after else at or self._clock.now())
        with self._store.transaction() as tx:
            users = tx.system_metrics.load_top_users(
                span, period.start_date, order, after, page.fetch_limit
            )
        kept, token = self._pager.close(
            page,
            users,
            lambda user: {
                "v": user.cost_micros if order is TopUsersOrder.COST else user.generations,
                "u": user.user_id,
                "r": user.rank,
                "t": period.start.isoformat(),
            },
        )
        return TopUsersPage(period, kept, token)
