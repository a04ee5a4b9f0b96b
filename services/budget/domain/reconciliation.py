"""What reconciliation finds: each difference between the counters and the
ledger, and the run's totals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from services.budget.domain.windows import Scope, Span, local_date, local_midnight

# At most this many differences are reported; `truncated` says there were more.
MAX_DIFFERENCES = 1000


@dataclass(frozen=True)
class Difference:
    field: str
    counter_micros: int
    ledger_micros: int
    description: str
    scope: Scope | None = None
    span: Span | None = None
    user_id: str = ""
    start_date: date | None = None
    reservation_id: str = ""


@dataclass(frozen=True)
class Reconciliation:
    windows_checked: int
    reservations_checked: int
    differences: list[Difference]
    truncated: bool

    @property
    def consistent(self) -> bool:
        return not self.differences


@dataclass(frozen=True)
class CheckedRange:
    """Which windows a reconciliation checks: those beginning on or after
    since_day (day windows) or since_month (month windows); records of their
    reservations were written on or after since_instant (None: everything)."""

    since_day: date
    since_month: date
    since_instant: datetime | None

    @classmethod
    def starting(cls, since: datetime | None, zone: ZoneInfo) -> CheckedRange:
        since_day = local_date(since, zone) if since else date.min
        since_month = since_day.replace(day=1)
        instant = local_midnight(since_month, zone) if since_month > date.min else None
        return cls(since_day, since_month, instant)
