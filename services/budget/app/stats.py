"""GetUsageStats and ListUsage: a user's figures and the pages of its ledger,
computed by the database (aggregates and keyset pages over one user's index
range, never rows loaded into memory)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from services.budget.app.paging import Pager
from services.budget.domain.usage import Cursor, StatsPeriod, UsagePage, UsageStats
from services.budget.domain.validation import Violations
from services.budget.domain.windows import month_of
from services.budget.store.unit_of_work import BudgetStore
from services.common.clock import Clock


def _cursor(position: Mapping[str, object]) -> Cursor:
    return Cursor(datetime.fromisoformat(str(position["c"])), int(str(position["i"])))


class Stats:
    def __init__(self, store: BudgetStore, clock: Clock, zone: ZoneInfo, pager: Pager) -> None:
        self._store = store
        self._clock = clock
        self._zone = zone
        self._pager = pager

    def usage(
        self,
        user_id: str,
        period: StatsPeriod | None,
        violations: Violations,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        time_zone: str = "",
    ) -> UsageStats:
        zone = violations.time_zone(time_zone, self._zone)
        now = self._clock.now()
        span = violations.stats_span(period, start, end, now, zone)
        violations.raise_if_any()
        assert period is not None and span is not None
        month = month_of(now, zone)
        with self._store.transaction() as tx:
            summary = tx.usage.load_summary(
                user_id, (span.start, span.end), (month.start, month.end)
            )
        return UsageStats.of(user_id, period, span, zone.key, summary)

    def list_usage(
        self,
        user_id: str,
        violations: Violations,
        *,
        page_size: int = 0,
        page_token: str = "",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> UsagePage:
        if start is not None and end is not None and end <= start:
            violations.add("end_time", "must be after start_time")
        query = {"user_id": user_id, "start": start, "end": end}
        page = self._pager.open(violations, page_size, page_token, query)
        after = page.after(violations, _cursor)
        violations.raise_if_any()
        with self._store.transaction() as tx:
            rows = tx.usage.load_page(
                user_id, after=after, limit=page.fetch_limit, start=start, end=end
            )
        kept, token = self._pager.close(
            page, rows, lambda row: {"c": row[1].created_at.isoformat(), "i": row[1].id}
        )
        return UsagePage([usage for usage, _ in kept], token)
