"""Calendar windows: days, Monday weeks and months in a configured zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.budget.domain.windows import (
    SYSTEM_SUBJECT,
    Scope,
    Span,
    WindowKey,
    day_of,
    month_of,
    period_starting,
    week_of,
)

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def test_a_utc_day_runs_from_midnight_to_midnight() -> None:
    day = day_of(datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC), UTC_ZONE)
    assert day.start_date == date(2026, 3, 10)
    assert day.start == datetime(2026, 3, 10, tzinfo=UTC)
    assert day.end == datetime(2026, 3, 11, tzinfo=UTC)


def test_midnight_belongs_to_the_new_day() -> None:
    midnight = datetime(2026, 3, 11, tzinfo=UTC)
    assert day_of(midnight, UTC_ZONE).start_date == date(2026, 3, 11)
    assert day_of(midnight - timedelta(microseconds=1), UTC_ZONE).start_date == date(2026, 3, 10)


@pytest.mark.parametrize(
    ("instant", "start", "end"),
    [
        (datetime(2026, 1, 31, 23, 59, tzinfo=UTC), date(2026, 1, 1), date(2026, 2, 1)),
        (datetime(2026, 2, 28, 12, tzinfo=UTC), date(2026, 2, 1), date(2026, 3, 1)),
        (datetime(2028, 2, 29, 12, tzinfo=UTC), date(2028, 2, 1), date(2028, 3, 1)),
        (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), date(2026, 12, 1), date(2027, 1, 1)),
    ],
)
def test_a_month_is_the_calendar_month(instant: datetime, start: date, end: date) -> None:
    month = month_of(instant, UTC_ZONE)
    assert month.start_date == start
    assert month.start == datetime.combine(start, datetime.min.time(), UTC)
    assert month.end == datetime.combine(end, datetime.min.time(), UTC)


def test_weeks_start_on_monday() -> None:
    sunday_night = datetime(2026, 3, 15, 23, 0, tzinfo=UTC)
    week = week_of(sunday_night, UTC_ZONE)
    assert week.start_date == date(2026, 3, 9)  # a Monday
    assert week.end == datetime(2026, 3, 16, tzinfo=UTC)
    assert week_of(datetime(2026, 3, 16, tzinfo=UTC), UTC_ZONE).start_date == date(2026, 3, 16)


def test_a_day_in_another_zone_starts_at_its_local_midnight() -> None:
    # 23:30 UTC on 10 March is 00:30 on 11 March in Berlin (UTC+1 in winter).
    day = day_of(datetime(2026, 3, 10, 23, 30, tzinfo=UTC), BERLIN)
    assert day.start_date == date(2026, 3, 11)
    assert day.start == datetime(2026, 3, 10, 23, 0, tzinfo=UTC)


def test_the_day_clocks_spring_forward_has_23_hours() -> None:
    day = day_of(datetime(2026, 3, 29, 12, tzinfo=UTC), BERLIN)
    assert day.end - day.start == timedelta(hours=23)


def test_a_month_window_must_start_on_the_first() -> None:
    with pytest.raises(ValueError):
        period_starting(Span.MONTH, date(2026, 3, 2), UTC_ZONE)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError):
        day_of(datetime(2026, 3, 10), UTC_ZONE)


def test_lock_order_puts_user_windows_before_system_windows() -> None:
    day, month = date(2026, 3, 10), date(2026, 3, 1)
    keys = [
        WindowKey(Scope.SYSTEM, SYSTEM_SUBJECT, Span.MONTH, month),
        WindowKey(Scope.SYSTEM, SYSTEM_SUBJECT, Span.DAY, day),
        WindowKey(Scope.USER, "u1", Span.MONTH, month),
        WindowKey(Scope.USER, "u1", Span.DAY, day),
    ]
    ordered = sorted(keys, key=WindowKey.lock_order)
    assert [k.name for k in ordered] == [
        "user_daily",
        "user_monthly",
        "system_daily",
        "system_monthly",
    ]
