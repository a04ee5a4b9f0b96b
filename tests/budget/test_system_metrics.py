"""GetSystemMetrics and ListTopUsers: every figure equals a direct read of
the ledger on random traffic (abandoned attempts and their late settlement
included), in zones with whole-hour, half-hour and daylight-saving offsets;
who may call them; bad input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf import timestamp_pb2
from recipeimage.budget.v1 import system_metrics_pb2 as mpb

from services.common.status import rich_details
from tests.budget.system_metrics_support import (
    START,
    RandomTraffic,
    expected_figures,
    in_range,
    ledger,
    reported_figures,
    unlimited_budget,
)
from tests.support.budget_server import ManualClock, RunningBudget


def ts(instant: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(instant)
    return message


@pytest.fixture
def budget(database_url: str, authenticator, clock: ManualClock) -> Iterator[RunningBudget]:
    with unlimited_budget(database_url, authenticator, clock) as running:
        yield running


def metrics(budget, tokens, **fields) -> mpb.GetSystemMetricsResponse:  # type: ignore[no-untyped-def]
    return budget.stub.GetSystemMetrics(
        mpb.GetSystemMetricsRequest(**fields), metadata=tokens.admin()
    )


def check_against_ledger(response, rows, start: datetime, end: datetime) -> None:  # type: ignore[no-untyped-def]
    assert (
        response.start_time.ToDatetime(tzinfo=UTC),
        response.end_time.ToDatetime(tzinfo=UTC),
    ) == (
        start,
        end,
    )
    assert reported_figures(response) == expected_figures(in_range(rows, start, end))
    # The trend covers the range, point after point, each equal to the ledger.
    points = [
        (p.start_time.ToDatetime(tzinfo=UTC), p.end_time.ToDatetime(tzinfo=UTC))
        for p in response.trend
    ]
    assert points[0][0] == start and points[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(points, points[1:], strict=False))
    for point, (a, b) in zip(response.trend, points, strict=True):
        inside = in_range(rows, a, b)
        assert (point.generations, point.cost_micros) == (
            len(inside),
            sum(r.cost_micros for r in inside),
        ), (a, b)
    assert sum(p.generations for p in response.trend) == response.generations
    if response.generations:
        hits = response.cache.exact_hits + response.cache.similar_hits
        assert response.cache.hit_rate == pytest.approx(hits / response.generations)


def test_every_figure_equals_the_ledger_on_random_traffic(budget, tokens, clock) -> None:
    RandomTraffic(budget, tokens, clock, seed=7).run(START, timedelta(days=4), 160)
    rows = ledger(budget)
    assert {r.outcome for r in rows} >= {"abandoned", "generated", "failed", "refused"}
    clock.set(datetime(2026, 3, 29, 15, 30, tzinfo=UTC))
    odd = datetime(2026, 3, 27, 19, 17, 23, tzinfo=UTC)
    cases = [
        (
            {"period": mpb.METRICS_PERIOD_DAY, "time_zone": "UTC"},
            "2026-03-29T00:00",
            "2026-03-30T00:00",
        ),
        (
            {"period": mpb.METRICS_PERIOD_DAY, "time_zone": "Asia/Kolkata"},
            "2026-03-28T18:30",
            "2026-03-29T18:30",
        ),
        (
            {"period": mpb.METRICS_PERIOD_DAY, "time_zone": "Europe/Berlin"},
            "2026-03-28T23:00",
            "2026-03-29T22:00",
        ),
        (
            {"period": mpb.METRICS_PERIOD_WEEK, "time_zone": "Europe/Berlin"},
            "2026-03-22T23:00",
            "2026-03-29T22:00",
        ),
        (
            {"period": mpb.METRICS_PERIOD_MONTH, "time_zone": "Asia/Kathmandu"},
            "2026-02-28T18:15",
            "2026-03-31T18:15",
        ),
        (
            {"period": mpb.METRICS_PERIOD_MONTH, "time_zone": "UTC"},
            "2026-03-01T00:00",
            "2026-04-01T00:00",
        ),
    ]
    for fields, start, end in cases:
        response = metrics(budget, tokens, **fields)
        check_against_ledger(
            response,
            rows,
            datetime.fromisoformat(start + "+00:00"),
            datetime.fromisoformat(end + "+00:00"),
        )
        assert response.time_zone == fields["time_zone"]
    ranges = [
        (odd, odd + timedelta(days=3, hours=2, minutes=11)),  # daily trend, odd edges
        (odd, odd + timedelta(minutes=30)),  # within one hour: all ledger
        (odd, odd + timedelta(minutes=90)),  # two partial hours, no whole one
        (odd, odd + timedelta(hours=47)),  # hourly trend across midnights
        (START, START + timedelta(days=5)),  # whole hours and days: no ledger at all
        # Most of March: the month less two days and some hours, all with traffic.
        (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 29, 12, 30, tzinfo=UTC)),
        # Most of one UTC day: the day less the hours before and after.
        (datetime(2026, 3, 28, 1, 30, tzinfo=UTC), datetime(2026, 3, 28, 22, 10, tzinfo=UTC)),
    ]
    for start_time, end_time in ranges:
        for zone in ("UTC", "Asia/Kolkata"):
            response = metrics(
                budget,
                tokens,
                period=mpb.METRICS_PERIOD_RANGE,
                start_time=ts(start_time),
                end_time=ts(end_time),
                time_zone=zone,
            )
            check_against_ledger(response, rows, start_time, end_time)
            hourly = end_time - start_time <= timedelta(hours=48)
            assert response.trend_granularity == (
                mpb.TREND_GRANULARITY_HOUR if hourly else mpb.TREND_GRANULARITY_DAY
            )


def test_the_trend_is_hourly_for_a_day_and_daily_in_the_zone_for_longer(
    budget, tokens, clock
) -> None:
    RandomTraffic(budget, tokens, clock, seed=3).run(START, timedelta(days=3), 40)
    clock.set(datetime(2026, 3, 29, 15, 30, tzinfo=UTC))
    day = metrics(budget, tokens, period=mpb.METRICS_PERIOD_DAY, time_zone="Europe/Berlin")
    # March 29 in Berlin has 23 hours (daylight saving time begins).
    assert len(day.trend) == 23 and day.trend_granularity == mpb.TREND_GRANULARITY_HOUR
    week = metrics(budget, tokens, period=mpb.METRICS_PERIOD_WEEK, time_zone="Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    starts = [p.start_time.ToDatetime(tzinfo=UTC).astimezone(berlin) for p in week.trend]
    assert len(starts) == 7 and all((s.hour, s.minute) == (0, 0) for s in starts)
    # In +05:30 a day's inner bounds fall on the UTC hour before local midnight.
    kolkata = metrics(
        budget,
        tokens,
        period=mpb.METRICS_PERIOD_RANGE,
        start_time=ts(datetime(2026, 3, 26, 18, 30, tzinfo=UTC)),
        end_time=ts(datetime(2026, 3, 30, 18, 30, tzinfo=UTC)),
        time_zone="Asia/Kolkata",
    )
    bounds = [p.start_time.ToDatetime(tzinfo=UTC) for p in kolkata.trend]
    assert bounds[0].minute == 30 and all(b.minute == 0 for b in bounds[1:])
    assert len(bounds) == 4


def test_an_empty_range_reports_zeros(budget, tokens) -> None:
    response = metrics(budget, tokens, period=mpb.METRICS_PERIOD_DAY, time_zone="UTC")
    assert response.generations == 0 and response.average_cost_per_generation_micros == 0
    assert response.cache.hit_rate == 0 and not response.outcomes and not response.spend
    assert len(response.trend) == 24 and all(p.generations == 0 for p in response.trend)


def top_users(budget, tokens, **fields) -> list[mpb.ListTopUsersResponse]:  # type: ignore[no-untyped-def]
    pages, token = [], ""
    while True:
        page = budget.stub.ListTopUsers(
            mpb.ListTopUsersRequest(page_size=2, page_token=token, **fields),
            metadata=tokens.admin(),
        )
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages


def test_top_users_rank_a_utc_day_and_month_as_the_ledger_does(budget, tokens, clock) -> None:
    RandomTraffic(budget, tokens, clock, seed=11).run(START, timedelta(days=3), 120)
    rows = ledger(budget)
    clock.set(datetime(2026, 3, 29, 15, 30, tzinfo=UTC))
    for period, start, end in (
        (
            mpb.TOP_USERS_PERIOD_DAY,
            datetime(2026, 3, 28, tzinfo=UTC),
            datetime(2026, 3, 29, tzinfo=UTC),
        ),
        (
            mpb.TOP_USERS_PERIOD_MONTH,
            datetime(2026, 3, 1, tzinfo=UTC),
            datetime(2026, 4, 1, tzinfo=UTC),
        ),
    ):
        totals: dict[str, list[int]] = {}
        for r in in_range(rows, start, end):
            sums = totals.setdefault(r.user_id, [0, 0])
            sums[0] += r.cost_micros
            sums[1] += 1
        for order, index in ((mpb.TOP_USERS_ORDER_COST, 0), (mpb.TOP_USERS_ORDER_GENERATIONS, 1)):
            expected = sorted(
                ((user, cost, count) for user, (cost, count) in totals.items()),
                key=lambda t: (t[index + 1], t[0]),
                reverse=True,
            )
            pages = top_users(
                budget, tokens, period=period, time=ts(start + timedelta(hours=5)), order_by=order
            )
            assert len(pages) == (len(expected) + 1) // 2 or len(pages) == len(expected) // 2 + 1
            got = [(u.user_id, u.cost_micros, u.generations) for p in pages for u in p.users]
            assert got == expected
            assert [u.rank for p in pages for u in p.users] == list(range(1, len(got) + 1))
            assert pages[0].start_time.ToDatetime(tzinfo=UTC) == start
            assert pages[0].end_time.ToDatetime(tzinfo=UTC) == end
    # Unset time: now's UTC day.
    [today] = top_users(budget, tokens, period=mpb.TOP_USERS_PERIOD_DAY)[:1]
    assert today.start_time.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 29, tzinfo=UTC)


def refusal(call) -> tuple[grpc.StatusCode, set[str]]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call()
    fields = {
        v.field
        for d in rich_details(raised.value)
        if type(d).__name__ == "BadRequest"
        for v in d.field_violations
    }
    return raised.value.code(), fields


@pytest.mark.parametrize("caller", ["user", "service"])
def test_only_admins_read_system_metrics(budget, tokens, caller: str) -> None:
    metadata = tokens.user("u1") if caller == "user" else tokens.service()
    for call in (
        lambda: budget.stub.GetSystemMetrics(
            mpb.GetSystemMetricsRequest(period=mpb.METRICS_PERIOD_DAY), metadata=metadata
        ),
        lambda: budget.stub.ListTopUsers(
            mpb.ListTopUsersRequest(period=mpb.TOP_USERS_PERIOD_DAY), metadata=metadata
        ),
    ):
        assert refusal(call)[0] == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as raised:
        budget.stub.GetSystemMetrics(mpb.GetSystemMetricsRequest(period=mpb.METRICS_PERIOD_DAY))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bad_input_is_refused_naming_each_field(budget, tokens) -> None:
    t0 = datetime(2026, 3, 10, tzinfo=UTC)
    bad = [
        ({}, {"period"}),
        ({"period": mpb.METRICS_PERIOD_DAY, "time_zone": "Mars/Olympus"}, {"time_zone"}),
        ({"period": mpb.METRICS_PERIOD_DAY, "time_zone": "x" * 65}, {"time_zone"}),
        ({"period": mpb.METRICS_PERIOD_RANGE, "start_time": ts(t0)}, {"end_time"}),
        (
            {"period": mpb.METRICS_PERIOD_RANGE, "start_time": ts(t0), "end_time": ts(t0)},
            {"end_time"},
        ),
        (
            {
                "period": mpb.METRICS_PERIOD_RANGE,
                "start_time": ts(t0),
                "end_time": ts(t0 + timedelta(days=367)),
            },
            {"end_time"},
        ),
        ({"period": mpb.METRICS_PERIOD_MONTH, "start_time": ts(t0)}, {"start_time"}),
    ]
    for fields, names in bad:
        code, found = refusal(
            lambda f=fields: budget.stub.GetSystemMetrics(  # type: ignore[misc]
                mpb.GetSystemMetricsRequest(**f), metadata=tokens.admin()
            )
        )
        assert (code, found) == (grpc.StatusCode.INVALID_ARGUMENT, names), fields
    for fields, names in (
        ({}, {"period"}),
        ({"period": mpb.TOP_USERS_PERIOD_DAY, "page_token": "forged"}, {"page_token"}),
        ({"period": mpb.TOP_USERS_PERIOD_DAY, "page_size": -1}, {"page_size"}),
    ):
        code, found = refusal(
            lambda f=fields: budget.stub.ListTopUsers(  # type: ignore[misc]
                mpb.ListTopUsersRequest(**f), metadata=tokens.admin()
            )
        )
        assert (code, found) == (grpc.StatusCode.INVALID_ARGUMENT, names), fields


def test_a_page_token_is_bound_to_its_ranking(budget, tokens, clock) -> None:
    RandomTraffic(budget, tokens, clock, seed=5).run(START, timedelta(hours=5), 30)
    first = budget.stub.ListTopUsers(
        mpb.ListTopUsersRequest(period=mpb.TOP_USERS_PERIOD_MONTH, page_size=1),
        metadata=tokens.admin(),
    )
    assert first.next_page_token
    code, found = refusal(
        lambda: budget.stub.ListTopUsers(
            mpb.ListTopUsersRequest(
                period=mpb.TOP_USERS_PERIOD_MONTH,
                order_by=mpb.TOP_USERS_ORDER_GENERATIONS,
                page_token=first.next_page_token,
            ),
            metadata=tokens.admin(),
        )
    )
    assert (code, found) == (grpc.StatusCode.INVALID_ARGUMENT, {"page_token"})
