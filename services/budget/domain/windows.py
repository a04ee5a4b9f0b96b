"""Calendar windows: days, ISO weeks (Monday first) and months in one time zone.

A window is identified by its local start date; its bounds are instants in
UTC, so a window in a zone with daylight saving time may be 23 or 25 hours
long. Plain Python: no database, no gRPC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


class Scope(enum.StrEnum):
    USER = "user"
    SYSTEM = "system"


class Span(enum.StrEnum):
    DAY = "day"
    MONTH = "month"


# The subject of the system-wide windows (a user id is never "*").
SYSTEM_SUBJECT = "*"


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC; start_date is the local date the period begins on."""

    start_date: date
    start: datetime
    end: datetime

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def window_name(scope: Scope, span: Span) -> str:
    """user_daily, user_monthly, system_daily or system_monthly."""
    return f"{scope}_{'daily' if span is Span.DAY else 'monthly'}"


@dataclass(frozen=True)
class WindowKey:
    """One counter row: whose window, which span, starting on which local date."""

    scope: Scope
    subject: str
    span: Span
    start_date: date

    @property
    def name(self) -> str:
        """user_daily, user_monthly, system_daily or system_monthly."""
        return window_name(self.scope, self.span)

    def lock_order(self) -> tuple[int, str, str, date]:
        """The one order every transaction updates window rows in.

        A fixed total order means two transactions never wait on each other in
        a cycle (no deadlocks on PostgreSQL). User windows come first so a
        refusal names the user's own limit before the system's.
        """
        return (
            0 if self.scope is Scope.USER else 1,
            self.subject,
            self.span.value,
            self.start_date,
        )


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _first_of_next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    if instant.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    return instant.astimezone(zone).date()


def period_starting(span: Span, start_date: date, zone: ZoneInfo) -> Period:
    """The day or month window that begins on start_date."""
    if span is Span.DAY:
        end_date = start_date + timedelta(days=1)
    else:
        if start_date.day != 1:
            raise ValueError(f"a month window starts on the 1st, not {start_date}")
        end_date = _first_of_next_month(start_date)
    return Period(start_date, local_midnight(start_date, zone), local_midnight(end_date, zone))


def day_of(instant: datetime, zone: ZoneInfo) -> Period:
    return period_starting(Span.DAY, local_date(instant, zone), zone)


def month_of(instant: datetime, zone: ZoneInfo) -> Period:
    return period_starting(Span.MONTH, local_date(instant, zone).replace(day=1), zone)


def week_of(instant: datetime, zone: ZoneInfo) -> Period:
    """The calendar week holding instant; weeks start on Monday."""
    today = local_date(instant, zone)
    monday = today - timedelta(days=today.weekday())
    return Period(monday, local_midnight(monday, zone), local_midnight(monday + timedelta(7), zone))


def period_of(span: Span, instant: datetime, zone: ZoneInfo) -> Period:
    return day_of(instant, zone) if span is Span.DAY else month_of(instant, zone)
