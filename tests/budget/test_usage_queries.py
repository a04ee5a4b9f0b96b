"""GetUsageStats over explicit ranges and time zones with its breakdowns,
ListUsage paging, who may read what, and the index the queries run on."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2
from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.common.v1 import image_quality_pb2
from sqlalchemy import event, insert, select

from services.budget.store.models import UsageRow
from services.common.db import is_sqlite
from services.common.status import rich_details

HIGH = image_quality_pb2.IMAGE_QUALITY_HIGH
MEDIUM = image_quality_pb2.IMAGE_QUALITY_MEDIUM


def ts(instant: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(instant)
    return message


def utc(day: int, hour: int = 12, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def refusal(call) -> tuple[grpc.StatusCode, dict]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), {type(d).__name__: d for d in rich_details(raised.value)}


class Ledger:
    """Writes attempts through the real RPCs at chosen instants."""

    def __init__(self, budget, tokens, clock) -> None:  # type: ignore[no-untyped-def]
        self.budget, self.tokens, self.clock = budget, tokens, clock

    def generated(
        self,
        when: datetime,
        key: str,
        cost: int,
        *,
        user: str = "u1",
        model: str = "gpt-image-1.5",
        size: str = "1024x1024",
        quality: int = MEDIUM,
    ) -> None:
        self.clock.set(when)
        held = self.budget.stub.ReserveBudget(
            pb.ReserveBudgetRequest(user_id=user, amount_micros=cost, idempotency_key=key),
            metadata=self.tokens.service(),
        ).reservation
        self.budget.stub.CommitReservation(
            pb.CommitReservationRequest(
                reservation_id=held.reservation_id,
                actual_cost_micros=cost,
                usage=pb.UsageRecord(model=model, size=size, quality=quality),
            ),
            metadata=self.tokens.service(),
        )

    def recorded(self, when: datetime, key: str, outcome: int, *, user: str = "u1", **fields):  # type: ignore[no-untyped-def]
        self.clock.set(when)
        self.budget.stub.RecordUsage(
            pb.RecordUsageRequest(
                usage=pb.UsageRecord(request_id=key, user_id=user, outcome=outcome, **fields)
            ),
            metadata=self.tokens.service(),
        )


def stats(budget, metadata, **fields) -> pb.GetUsageStatsResponse:  # type: ignore[no-untyped-def]
    return budget.stub.GetUsageStats(pb.GetUsageStatsRequest(**fields), metadata=metadata)


def test_an_explicit_range_with_breakdowns_by_model_size_quality_and_outcome(
    budget, tokens, clock
) -> None:
    ledger = Ledger(budget, tokens, clock)
    ledger.generated(utc(2, 9), "before", 999)
    ledger.generated(utc(3, 9), "a", 40_000, quality=HIGH, size="1024x1536")
    ledger.generated(utc(4, 9), "b", 40_000, quality=HIGH, size="1024x1536")
    ledger.generated(utc(5, 9), "c", 11_000)
    ledger.generated(utc(5, 10), "d", 9_000, model="gpt-image-2.5-sunburst")
    ledger.recorded(
        utc(6, 9),
        "hit",
        pb.USAGE_OUTCOME_CACHE_HIT_EXACT,
        cost_saved_micros=11_000,
        success=True,
        model="gpt-image-1.5",
        size="1024x1024",
        quality=MEDIUM,
    )
    ledger.recorded(
        utc(6, 10), "similar", pb.USAGE_OUTCOME_CACHE_HIT_SIMILAR, cost_saved_micros=7, success=True
    )
    ledger.recorded(utc(7, 9), "fb", pb.USAGE_OUTCOME_FALLBACK, error_message="provider down")
    ledger.recorded(utc(7, 10), "no", pb.USAGE_OUTCOME_REFUSED)
    ledger.generated(utc(8, 9), "after", 777)
    ledger.generated(utc(5, 9), "other-user", 55_555, user="u2")
    clock.set(utc(20))

    answer = stats(
        budget,
        tokens.user("u1"),
        period=pb.STATS_PERIOD_RANGE,
        start_time=ts(utc(3, 0)),
        end_time=ts(utc(8, 0)),
    )
    assert answer.period == pb.STATS_PERIOD_RANGE
    assert answer.start_time.ToDatetime(tzinfo=UTC) == utc(3, 0)
    assert answer.end_time.ToDatetime(tzinfo=UTC) == utc(8, 0)
    assert (answer.total_generations, answer.total_cost_micros) == (8, 100_000)
    assert (answer.successful_generations, answer.failed_generations) == (6, 2)
    assert answer.fallback_generations == 1
    assert (answer.cache_hits, answer.cost_saved_micros) == (2, 11_007)
    assert answer.average_cost_per_generation_micros == 12_500
    assert answer.last_generation_time.ToDatetime(tzinfo=UTC) == utc(7, 10)
    # The month is March whatever the range: every March record of u1.
    assert (answer.monthly_usage, answer.monthly_cost_micros) == (10, 100_999 + 777)

    assert [
        (b.model, b.size, b.quality, b.generations, b.successful_generations, b.cost_micros)
        for b in answer.breakdown
    ] == [
        ("gpt-image-1.5", "1024x1536", HIGH, 2, 2, 80_000),
        ("gpt-image-1.5", "1024x1024", MEDIUM, 2, 2, 11_000),
        ("gpt-image-2.5-sunburst", "1024x1024", MEDIUM, 1, 1, 9_000),
        ("", "", image_quality_pb2.IMAGE_QUALITY_UNSPECIFIED, 3, 1, 0),
    ]
    hits = answer.breakdown[1]
    assert (hits.cache_hits, hits.cost_saved_micros) == (1, 11_000)
    assert [(o.outcome, o.count, o.cost_micros, o.cost_saved_micros) for o in answer.outcomes] == [
        (pb.USAGE_OUTCOME_GENERATED, 4, 100_000, 0),
        (pb.USAGE_OUTCOME_CACHE_HIT_EXACT, 1, 0, 11_000),
        (pb.USAGE_OUTCOME_CACHE_HIT_SIMILAR, 1, 0, 7),
        (pb.USAGE_OUTCOME_FALLBACK, 1, 0, 0),
        (pb.USAGE_OUTCOME_REFUSED, 1, 0, 0),
    ]


def test_calendar_periods_follow_the_requested_time_zone(budget, tokens, clock) -> None:
    ledger = Ledger(budget, tokens, clock)
    # 23:30 UTC on Tuesday 10 March is already Wednesday 11 March in Tokyo.
    ledger.generated(utc(10, 23, 30), "late-tuesday-utc", 1_000)
    ledger.generated(utc(10, 14), "tuesday", 10)
    # 20:00 UTC on 31 March is 1 April in Tokyo: a new month there.
    ledger.generated(utc(31, 20), "april-in-tokyo", 5)
    clock.set(utc(11, 2))  # 11 March, 11:00 in Tokyo

    utc_day = stats(budget, tokens.service(), user_id="u1", period=pb.STATS_PERIOD_DAY)
    assert (utc_day.time_zone, utc_day.total_generations) == ("UTC", 0)
    tokyo_day = stats(
        budget,
        tokens.service(),
        user_id="u1",
        period=pb.STATS_PERIOD_DAY,
        time_zone="Asia/Tokyo",
    )
    assert tokyo_day.time_zone == "Asia/Tokyo"
    assert tokyo_day.start_time.ToDatetime(tzinfo=UTC) == utc(10, 15)
    assert (tokyo_day.total_generations, tokyo_day.total_cost_micros) == (1, 1_000)

    clock.set(utc(31, 21))
    tokyo_month = stats(
        budget, tokens.service(), user_id="u1", period=pb.STATS_PERIOD_MONTH, time_zone="Asia/Tokyo"
    )
    assert tokyo_month.start_time.ToDatetime(tzinfo=UTC) == utc(31, 15)
    assert (tokyo_month.total_generations, tokyo_month.monthly_cost_micros) == (1, 5)
    utc_month = stats(budget, tokens.service(), user_id="u1", period=pb.STATS_PERIOD_MONTH)
    assert (utc_month.total_generations, utc_month.total_cost_micros) == (3, 1_015)


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"period": pb.STATS_PERIOD_RANGE}, ["end_time", "start_time"]),
        ({"period": pb.STATS_PERIOD_RANGE, "start_time": ts(utc(3))}, ["end_time"]),
        (
            {"period": pb.STATS_PERIOD_RANGE, "start_time": ts(utc(3)), "end_time": ts(utc(3))},
            ["end_time"],
        ),
        (
            {
                "period": pb.STATS_PERIOD_RANGE,
                "start_time": ts(utc(3)),
                "end_time": ts(utc(3) + timedelta(days=367)),
            },
            ["end_time"],
        ),
        ({"period": pb.STATS_PERIOD_DAY, "start_time": ts(utc(3))}, ["start_time"]),
        ({"period": pb.STATS_PERIOD_DAY, "time_zone": "Mars/Olympus"}, ["time_zone"]),
        ({}, ["period"]),
    ],
)
def test_bad_stats_requests_name_each_bad_field(budget, tokens, fields, bad) -> None:
    code, details = refusal(lambda: stats(budget, tokens.user("u1"), **fields))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(v.field for v in details["BadRequest"].field_violations) == bad


def page_through(budget, metadata, page_size: int, **fields) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
    seen, token, pages = [], "", 0
    while True:
        page = budget.stub.ListUsage(
            pb.ListUsageRequest(page_size=page_size, page_token=token, **fields),
            metadata=metadata,
        )
        assert len(page.usage_records) <= page_size
        seen += [record.request_id for record in page.usage_records]
        pages += 1
        token = page.next_page_token
        if not token:
            return seen, pages


def test_list_usage_pages_through_a_users_records_newest_first(budget, tokens, clock) -> None:
    ledger = Ledger(budget, tokens, clock)
    # Several records at one instant: the id orders them within it.
    for number in range(5):
        ledger.recorded(utc(4, 9), f"same-{number}", pb.USAGE_OUTCOME_FAILED)
    for number in range(6):
        ledger.recorded(utc(5, number), f"hour-{number}", pb.USAGE_OUTCOME_REFUSED)
    ledger.generated(utc(3, 9), "oldest", 12_345)
    ledger.recorded(utc(5, 12), "not-mine", pb.USAGE_OUTCOME_FAILED, user="u2")

    seen, pages = page_through(budget, tokens.user("u1"), 4)
    expected = [f"hour-{n}" for n in reversed(range(6))]
    expected += [f"same-{n}" for n in reversed(range(5))] + ["oldest"]
    assert seen == expected
    assert pages == 3

    first = budget.stub.ListUsage(
        pb.ListUsageRequest(
            user_id="u1", page_size=1, start_time=ts(utc(3, 0)), end_time=ts(utc(4, 0))
        ),
        metadata=tokens.service(),
    )
    record = first.usage_records[0]
    assert (record.request_id, record.cost_micros, record.outcome) == (
        "oldest",
        12_345,
        pb.USAGE_OUTCOME_GENERATED,
    )
    assert record.reservation_id and record.model == "gpt-image-1.5"
    assert first.next_page_token == ""
    seen, _ = page_through(
        budget, tokens.user("u1"), 100, start_time=ts(utc(5, 2)), end_time=ts(utc(5, 4))
    )
    assert seen == ["hour-3", "hour-2"]

    # The token is bound to the request's fields.
    page = budget.stub.ListUsage(pb.ListUsageRequest(page_size=2), metadata=tokens.user("u1"))
    for request_ in (
        pb.ListUsageRequest(
            user_id="u1", page_size=2, page_token=page.next_page_token, start_time=ts(utc(1))
        ),
        pb.ListUsageRequest(user_id="u1", page_token="garbage!"),
        pb.ListUsageRequest(user_id="u1", page_size=-3),
    ):
        code, _ = refusal(lambda r=request_: budget.stub.ListUsage(r, metadata=tokens.service()))
        assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_user_reads_only_its_own_usage(budget, tokens, clock) -> None:
    Ledger(budget, tokens, clock).generated(utc(10, 9), "secret", 10_000, user="alice")
    clock.set(utc(10, 10))
    for call in (
        lambda: stats(budget, tokens.user("bob"), user_id="alice", period=pb.STATS_PERIOD_DAY),
        lambda: budget.stub.ListUsage(
            pb.ListUsageRequest(user_id="alice"), metadata=tokens.user("bob")
        ),
    ):
        code, _ = refusal(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED
    # Without a user_id, bob sees bob's (nothing), never alice's.
    assert (
        budget.stub.ListUsage(pb.ListUsageRequest(), metadata=tokens.user("bob")).usage_records
        == []
    )
    assert stats(budget, tokens.user("bob"), period=pb.STATS_PERIOD_DAY).total_generations == 0
    # A page token of alice's does not open alice's records to bob.
    for number in range(3):
        Ledger(budget, tokens, clock).recorded(
            utc(10, 11), f"r{number}", pb.USAGE_OUTCOME_FAILED, user="alice"
        )
    alice = budget.stub.ListUsage(pb.ListUsageRequest(page_size=1), metadata=tokens.user("alice"))
    code, _ = refusal(
        lambda: budget.stub.ListUsage(
            pb.ListUsageRequest(page_size=1, page_token=alice.next_page_token),
            metadata=tokens.user("bob"),
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_the_usage_queries_read_one_users_range_from_the_index(budget, tokens, clock) -> None:
    """A few thousand records over many users: stats read whole days from the
    rollup and only the edges from the ledger, pages search the ledger's
    (user_id, created_at, id) index; nothing ever scans the ledger. On
    PostgreSQL the edges are index-only scans (the index carries the
    aggregated columns)."""
    rows = []
    for number in range(4_000):
        rows.append(
            {
                "request_id": f"bulk-{number}",
                "user_id": f"user-{number % 200}",
                "recipe_id": "",
                "prompt": "p",
                "prompt_length": 1,
                "size": "1024x1024",
                "quality": "medium",
                "model": "gpt-image-1.5",
                "provider": "offline",
                "cost_micros": 0 if number % 3 else 11_000,
                "success": bool(number % 5),
                "error_message": "",
                "fallback_used": False,
                "generation_time_ms": 10,
                "cached": bool(number % 3),
                "cache_hit": "exact" if number % 3 else "",
                "outcome": "cache_hit_exact" if number % 3 else "generated",
                "cost_saved_micros": 11_000 if number % 3 else 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "reservation_id": None,
                "created_at": utc(1) + timedelta(minutes=10 * number),
            }
        )
    with budget.app.sessions.begin() as session:
        session.execute(insert(UsageRow), rows)
    engine = budget.app.engine
    sqlite = is_sqlite(str(engine.url))
    with engine.connect() as connection:
        if sqlite:
            connection.exec_driver_sql("ANALYZE")
        else:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE budget_usage_records"
            )

    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "budget_usage_records" in statement and statement.lstrip().upper().startswith(
            ("SELECT", "WITH")
        ):
            captured.append((statement, parameters))

    clock.set(utc(20))
    event.listen(engine, "before_cursor_execute", capture)
    try:
        answer = stats(budget, tokens.user("user-7"), period=pb.STATS_PERIOD_MONTH)
        page = budget.stub.ListUsage(
            pb.ListUsageRequest(page_size=5), metadata=tokens.user("user-7")
        )
        budget.stub.ListUsage(
            pb.ListUsageRequest(page_size=5, page_token=page.next_page_token),
            metadata=tokens.user("user-7"),
        )
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert answer.total_generations == 20  # 4,000 over 200 users; all in March
    # One statement for the stats (four aggregates in a UNION ALL), one per page.
    assert len(captured) == 3
    index = "ix_budget_usage_records_user_id_created_at_id"
    with engine.connect() as connection:
        for statement, parameters in captured:
            explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            plan = "\n".join(
                str(row[-1]) for row in connection.exec_driver_sql(explain + statement, parameters)
            )
            assert index in plan, plan
            assert "SCAN budget_usage_records" not in plan, plan
            assert "Seq Scan on budget_usage_records" not in plan, plan
            if "budget_usage_daily" in statement:
                # The period's and the month's: two edges each from the ledger's
                # index, whole days from the rollup's key.
                searches = "Index Only Scan using" if not sqlite else "SEARCH budget_usage_records"
                assert plan.count(f"{searches} {index}" if not sqlite else searches) == 4, plan
                assert "budget_usage_daily" in plan, plan


def test_stats_from_the_rollup_equal_the_ledger_over_any_range(budget, tokens, clock) -> None:
    """Whole UTC days come from the rollup, partial days from the ledger: over
    random ranges and zones a minute off any boundary, every figure equals the
    same computed from the records themselves."""
    rng = random.Random(20261124)
    ledger = Ledger(budget, tokens, clock)
    start = utc(30, 0)
    outcomes = [
        pb.USAGE_OUTCOME_CACHE_HIT_EXACT,
        pb.USAGE_OUTCOME_CACHE_HIT_SIMILAR,
        pb.USAGE_OUTCOME_FAILED,
        pb.USAGE_OUTCOME_FALLBACK,
        pb.USAGE_OUTCOME_REFUSED,
    ]
    for number in range(70):
        when = start + timedelta(minutes=rng.randrange(5 * 24 * 60))
        model = rng.choice(["gpt-image-1.5", "gpt-image-2.5-sunburst"])
        quality = rng.choice([MEDIUM, HIGH])
        if rng.random() < 0.5:
            ledger.generated(
                when, f"g{number}", rng.randrange(1, 20_000), model=model, quality=quality
            )
        else:
            ledger.recorded(
                when,
                f"r{number}",
                rng.choice(outcomes),
                model=model,
                size="1024x1024",
                quality=quality,
                success=rng.random() < 0.7,
                cost_saved_micros=rng.randrange(0, 50_000),
            )
    with budget.app.sessions.begin() as session:
        records = [
            (
                r.created_at,
                r.cost_micros,
                r.success,
                r.cached,
                r.cost_saved_micros,
                r.outcome,
                r.model,
            )
            for r in session.scalars(select(UsageRow))
        ]

    def expected(lo: datetime, hi: datetime) -> tuple:
        inside = [r for r in records if lo <= r[0] < hi]
        return (
            len(inside),
            sum(r[1] for r in inside),
            sum(r[2] for r in inside),
            sum(r[3] for r in inside),
            sum(r[4] for r in inside),
            sum(r[5] == "fallback" for r in inside),
            max((r[0] for r in inside), default=None),
            sorted(Counter(r[6] for r in inside).items()),
        )

    def actual(answer: pb.GetUsageStatsResponse) -> tuple:
        by_model: Counter[str] = Counter()
        for row in answer.breakdown:
            by_model[row.model] += row.generations
        return (
            answer.total_generations,
            answer.total_cost_micros,
            answer.successful_generations,
            answer.cache_hits,
            answer.cost_saved_micros,
            answer.fallback_generations,
            answer.last_generation_time.ToDatetime(tzinfo=UTC)
            if answer.HasField("last_generation_time")
            else None,
            sorted(by_model.items()),
        )

    clock.set(utc(2, 13, month=4))
    for _ in range(25):
        lo = start + timedelta(minutes=rng.randrange(-600, 5 * 24 * 60))
        hi = lo + timedelta(minutes=rng.randrange(1, 4 * 24 * 60))
        answer = stats(
            budget,
            tokens.service(),
            user_id="u1",
            period=pb.STATS_PERIOD_RANGE,
            start_time=ts(lo),
            end_time=ts(hi),
        )
        assert actual(answer) == expected(lo, hi), (lo, hi)
    for zone in ("Asia/Kolkata", "America/St_Johns", "UTC", "Pacific/Kiritimati"):
        for period in (pb.STATS_PERIOD_DAY, pb.STATS_PERIOD_WEEK, pb.STATS_PERIOD_MONTH):
            answer = stats(budget, tokens.service(), user_id="u1", period=period, time_zone=zone)
            lo = answer.start_time.ToDatetime(tzinfo=UTC)
            hi = answer.end_time.ToDatetime(tzinfo=UTC)
            assert actual(answer) == expected(lo, hi), (zone, period)
