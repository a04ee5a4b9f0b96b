"""Expiry of forgotten reservations, late commits, and windows rolling over at
midnight and at the end of a month (both databases, clock driven by the test)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as pb
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.budget.domain.limits import TierLimits
from services.budget.domain.reservations import MAX_COMMIT_FACTOR
from services.common.status import rich_details
from tests.budget.conftest import T0, counters, reservation_states, usage_count
from tests.support.budget_server import running_budget, tiers

TODAY = date(2026, 3, 10)
MONTH = date(2026, 3, 1)
TTL = timedelta(seconds=900)


def reserve(budget, tokens, amount: int, key: str, user: str = "u1"):  # type: ignore[no-untyped-def]
    return budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id=user, amount_micros=amount, idempotency_key=key),
        metadata=tokens.service(),
    ).reservation


def test_the_reaper_expires_only_what_is_due_and_gives_the_money_back(
    budget, tokens, clock
) -> None:
    old = reserve(budget, tokens, 80_000, "old")
    clock.advance(timedelta(minutes=10))
    young = reserve(budget, tokens, 30_000, "young")
    assert budget.app.reap_expired(T0 + TTL - timedelta(seconds=1)) == 0

    clock.advance(timedelta(minutes=6))  # old is 16 min old, young 6
    assert budget.app.reap_expired() == 1
    states = reservation_states(budget)
    assert states == {old.reservation_id: "expired", young.reservation_id: "held"}
    for scope, span, start in [("user", "day", TODAY), ("system", "month", MONTH)]:
        window = counters(budget, scope, span, start, "u1")
        assert (window.reserved_micros, window.spent_micros) == (30_000, 0)
    # Reaping again finds nothing: the money is never returned twice.
    assert budget.app.reap_expired() == 0
    assert counters(budget, "user", "day", TODAY, "u1").reserved_micros == 30_000

    again = budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id="u1", amount_micros=80_000, idempotency_key="old"),
        metadata=tokens.service(),
    )
    assert again.replayed and again.reservation.state == pb.RESERVATION_STATE_EXPIRED


def test_a_late_commit_records_the_spend_as_an_overrun(budget, tokens, clock) -> None:
    held = reserve(budget, tokens, 80_000, "slow")
    clock.advance(TTL + timedelta(seconds=1))
    assert budget.app.reap_expired() == 1
    committed = budget.stub.CommitReservation(
        pb.CommitReservationRequest(reservation_id=held.reservation_id, actual_cost_micros=63_000),
        metadata=tokens.service(),
    ).reservation
    assert committed.state == pb.RESERVATION_STATE_COMMITTED
    assert committed.overrun
    assert committed.committed_micros == 63_000
    window = counters(budget, "user", "day", TODAY, "u1")
    assert (window.spent_micros, window.reserved_micros) == (63_000, 0)
    assert usage_count(budget, request_id="slow", cost_micros=63_000) == 1
    # A second commit changes nothing.
    budget.stub.CommitReservation(
        pb.CommitReservationRequest(reservation_id=held.reservation_id, actual_cost_micros=63_000),
        metadata=tokens.service(),
    )
    assert counters(budget, "system", "day", TODAY).spent_micros == 63_000
    assert usage_count(budget) == 1


def test_releasing_an_expired_reservation_records_the_attempt_once(budget, tokens, clock) -> None:
    """Released after expiry: the attempt is recorded once, no money moves twice,
    and the reservation is settled for good, so a commit after it is refused."""
    held = reserve(budget, tokens, 80_000, "slow")
    clock.advance(TTL)
    assert budget.app.reap_expired() == 1
    request = pb.ReleaseReservationRequest(
        reservation_id=held.reservation_id,
        usage=pb.UsageRecord(outcome=pb.USAGE_OUTCOME_FALLBACK),
    )
    for _ in range(2):
        released = budget.stub.ReleaseReservation(request, metadata=tokens.service()).reservation
        assert released.state == pb.RESERVATION_STATE_RELEASED
    assert usage_count(budget, request_id="slow", outcome="fallback", fallback_used=True) == 1
    assert usage_count(budget) == 1
    assert counters(budget, "user", "day", TODAY, "u1").reserved_micros == 0
    with pytest.raises(grpc.RpcError) as raised:
        budget.stub.CommitReservation(
            pb.CommitReservationRequest(reservation_id=held.reservation_id, actual_cost_micros=1),
            metadata=tokens.service(),
        )
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert counters(budget, "user", "day", TODAY, "u1").spent_micros == 0


def test_reapers_in_several_replicas_release_each_reservation_once(
    database_url, authenticator, tokens, clock
) -> None:
    with (
        running_budget(database_url, authenticator, clock=clock) as one,
        running_budget(database_url, authenticator, clock=clock) as two,
    ):
        for number in range(12):
            reserve(one, tokens, 10_000, f"k{number}", user=f"user{number % 3}")
        clock.advance(TTL)
        gate = threading.Barrier(4)
        counts: list[int] = []

        def reap(app) -> None:  # type: ignore[no-untyped-def]
            gate.wait()
            counts.append(app.reap_expired())

        threads = [threading.Thread(target=reap, args=(b.app,)) for b in (one, two, one, two)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(counts) == 12
        assert set(reservation_states(one).values()) == {"expired"}
        assert counters(one, "system", "day", TODAY).reserved_micros == 0
        for number in range(3):
            assert counters(one, "user", "month", MONTH, f"user{number}").reserved_micros == 0


def test_the_running_server_reaps_in_the_background(
    database_url, authenticator, tokens, clock
) -> None:
    with running_budget(
        database_url, authenticator, clock=clock, reaper_interval_seconds=0.05
    ) as budget:
        assert budget.app.reaper.running
        held = reserve(budget, tokens, 80_000, "forgotten")
        clock.advance(TTL)
        deadline = time.monotonic() + 10
        while reservation_states(budget)[held.reservation_id] != "expired":
            assert time.monotonic() < deadline, "the background reaper did not expire it"
            time.sleep(0.05)
        assert counters(budget, "user", "day", TODAY, "u1").reserved_micros == 0
    assert not budget.app.reaper.running


def test_the_day_rolls_over_at_midnight_and_a_commit_charges_the_day_it_held(
    database_url, authenticator, tokens, clock
) -> None:
    clock.set(datetime(2026, 3, 10, 23, 59, 30, tzinfo=UTC))
    with running_budget(database_url, authenticator, clock=clock) as budget:
        held = [reserve(budget, tokens, 80_000, f"late-{n}") for n in range(6)]
        with pytest.raises(grpc.RpcError) as raised:
            reserve(budget, tokens, 80_000, "refused")
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        clock.set(datetime(2026, 3, 11, 0, 0, 0, tzinfo=UTC))
        fresh = reserve(budget, tokens, 80_000, "after-midnight")
        limits = budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u1"), metadata=tokens.service())
        daily = limits.windows[0]
        assert daily.start_time.ToDatetime() == datetime(2026, 3, 11)
        assert (daily.reserved_micros, daily.spent_micros) == (80_000, 0)
        assert limits.windows[1].reserved_micros == 7 * 80_000  # the same month

        budget.stub.CommitReservation(
            pb.CommitReservationRequest(
                reservation_id=held[0].reservation_id, actual_cost_micros=50_000
            ),
            metadata=tokens.service(),
        )
        yesterday = counters(budget, "user", "day", date(2026, 3, 10), "u1")
        assert (yesterday.spent_micros, yesterday.reserved_micros) == (50_000, 400_000)
        today = counters(budget, "user", "day", date(2026, 3, 11), "u1")
        assert (today.spent_micros, today.reserved_micros) == (0, 80_000)
        assert fresh.amount_micros == 80_000


def test_the_month_rolls_over_at_month_end(database_url, authenticator, tokens, clock) -> None:
    small = tiers(
        free=TierLimits(daily_micros=5_000, monthly_micros=1_000, per_generation_micros=1_000)
    )
    clock.set(datetime(2026, 2, 28, 23, 0, tzinfo=UTC))
    with running_budget(database_url, authenticator, clock=clock, tiers=small) as budget:
        held = reserve(budget, tokens, 1_000, "february")
        with pytest.raises(grpc.RpcError) as raised:
            reserve(budget, tokens, 1, "february-more")
        info = next(d for d in rich_details(raised.value) if d.DESCRIPTOR.name == "ErrorInfo")
        assert info.reason == "MONTHLY_LIMIT_EXCEEDED"
        retry = next(d for d in rich_details(raised.value) if d.DESCRIPTOR.name == "RetryInfo")
        assert retry.retry_delay.ToTimedelta() == timedelta(hours=1)

        clock.set(datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC))
        march = reserve(budget, tokens, 1_000, "march")
        budget.stub.CommitReservation(
            pb.CommitReservationRequest(reservation_id=held.reservation_id, actual_cost_micros=900),
            metadata=tokens.service(),
        )
        february = counters(budget, "user", "month", date(2026, 2, 1), "u1")
        assert (february.spent_micros, february.reserved_micros) == (900, 0)
        assert counters(budget, "user", "month", MONTH, "u1").reserved_micros == 1_000
        assert counters(budget, "system", "month", date(2026, 2, 1)).spent_micros == 900
        limits = budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u1"), metadata=tokens.service())
        monthly = limits.windows[1]
        assert monthly.start_time.ToDatetime() == datetime(2026, 3, 1)
        assert monthly.reset_time.ToDatetime() == datetime(2026, 4, 1)
        assert (monthly.spent_micros, monthly.reserved_micros) == (0, 1_000)
        assert march.amount_micros == 1_000


def test_windows_follow_the_configured_time_zone(
    database_url, authenticator, tokens, clock
) -> None:
    # 23:30 UTC on 10 March is already 11 March in Tokyo (UTC+9): 08:30.
    clock.set(datetime(2026, 3, 10, 23, 30, tzinfo=UTC))
    with running_budget(
        database_url, authenticator, clock=clock, time_zone=ZoneInfo("Asia/Tokyo")
    ) as budget:
        for number in range(6):
            reserve(budget, tokens, 80_000, f"k{number}")
        with pytest.raises(grpc.RpcError) as raised:
            reserve(budget, tokens, 80_000, "over")
        # Until Tokyo midnight: 15:00 UTC on 11 March.
        retry = next(d for d in rich_details(raised.value) if d.DESCRIPTOR.name == "RetryInfo")
        assert retry.retry_delay.ToTimedelta() == timedelta(hours=15, minutes=30)
        assert counters(budget, "user", "day", date(2026, 3, 11), "u1").reserved_micros == 480_000


def test_get_limits_shows_overruns(budget, tokens, clock) -> None:
    """Spend no hold covered: a commit after expiry (all of it) and a commit
    above its hold (the excess). The money was spent, so it counts, and
    GetLimits says how much of the window's spend was never held."""
    slow = reserve(budget, tokens, 80_000, "slow")
    clock.advance(TTL)
    assert budget.app.reap_expired() == 1
    # Meanwhile the room the expired hold gave back is taken again.
    for number in range(6):
        reserve(budget, tokens, 70_000, f"fill-{number}")
    above = reserve(budget, tokens, 10_000, "above")
    late = budget.stub.CommitReservation(
        pb.CommitReservationRequest(reservation_id=slow.reservation_id, actual_cost_micros=75_000),
        metadata=tokens.service(),
    ).reservation
    assert late.overrun
    budget.stub.CommitReservation(
        pb.CommitReservationRequest(reservation_id=above.reservation_id, actual_cost_micros=12_000),
        metadata=tokens.service(),
    )
    limits = budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u1"), metadata=tokens.user("u1"))
    daily = limits.windows[0]
    assert (daily.spent_micros, daily.reserved_micros, daily.overrun_micros) == (
        87_000,
        420_000,
        77_000,
    )
    # Over the limit only by the overrun; what remains is never negative.
    assert daily.spent_micros + daily.reserved_micros - daily.overrun_micros <= daily.limit_micros
    assert daily.remaining_micros == 0
    assert [w.overrun_micros for w in limits.windows] == [77_000] * 4


def test_the_year_rolls_over_in_the_configured_zone(
    database_url, authenticator, tokens, clock
) -> None:
    """New Year in Berlin (UTC+1): at 23:00 UTC on 31 December both the day and
    the month (and the year) begin anew; a December hold is charged to December."""
    small = tiers(
        free=TierLimits(daily_micros=5_000, monthly_micros=9_000, per_generation_micros=5_000)
    )
    berlin = ZoneInfo("Europe/Berlin")
    clock.set(datetime(2026, 12, 31, 22, 59, 59, tzinfo=UTC))  # 23:59:59 in Berlin
    with running_budget(
        database_url, authenticator, clock=clock, tiers=small, time_zone=berlin
    ) as budget:
        december = reserve(budget, tokens, 5_000, "december")
        with pytest.raises(grpc.RpcError) as raised:
            reserve(budget, tokens, 1, "december-more")
        retry = next(d for d in rich_details(raised.value) if d.DESCRIPTOR.name == "RetryInfo")
        assert retry.retry_delay.ToTimedelta() == timedelta(seconds=1)

        clock.set(datetime(2026, 12, 31, 23, 0, tzinfo=UTC))  # midnight in Berlin
        january = reserve(budget, tokens, 5_000, "january")
        limits = budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u1"), metadata=tokens.service())
        daily, monthly = limits.windows[0], limits.windows[1]
        assert daily.start_time.ToDatetime(tzinfo=UTC) == datetime(2026, 12, 31, 23, tzinfo=UTC)
        assert monthly.start_time.ToDatetime(tzinfo=UTC) == datetime(2026, 12, 31, 23, tzinfo=UTC)
        assert monthly.reset_time.ToDatetime(tzinfo=UTC) == datetime(2027, 1, 31, 23, tzinfo=UTC)
        assert (daily.reserved_micros, monthly.reserved_micros) == (5_000, 5_000)
        assert limits.windows[3].start_time.ToDatetime(tzinfo=UTC) == datetime(
            2026, 12, 31, 23, tzinfo=UTC
        )

        budget.stub.CommitReservation(
            pb.CommitReservationRequest(
                reservation_id=december.reservation_id, actual_cost_micros=4_000
            ),
            metadata=tokens.service(),
        )
        old_day = counters(budget, "user", "day", date(2026, 12, 31), "u1")
        old_month = counters(budget, "system", "month", date(2026, 12, 1))
        assert (old_day.spent_micros, old_day.reserved_micros) == (4_000, 0)
        assert (old_month.spent_micros, old_month.reserved_micros) == (4_000, 0)
        new_month = counters(budget, "user", "month", date(2027, 1, 1), "u1")
        assert (new_month.spent_micros, new_month.reserved_micros) == (0, 5_000)
        assert january.amount_micros == 5_000
        stats = budget.stub.GetUsageStats(
            pb.GetUsageStatsRequest(user_id="u1", period=pb.STATS_PERIOD_MONTH),
            metadata=tokens.service(),
        )
        # The December commit's record is in January: it was written at commit.
        assert stats.start_time.ToDatetime(tzinfo=UTC) == datetime(2026, 12, 31, 23, tzinfo=UTC)
        assert (stats.total_generations, stats.total_cost_micros, stats.time_zone) == (
            1,
            4_000,
            "Europe/Berlin",
        )


def _records(budget, tokens, user: str = "u1"):  # type: ignore[no-untyped-def]
    return list(
        budget.stub.ListUsage(
            pb.ListUsageRequest(user_id=user), metadata=tokens.admin()
        ).usage_records
    )


def test_the_reaper_records_the_abandoned_attempt(budget, tokens, clock) -> None:
    held = reserve(budget, tokens, 80_000, "crashed")
    clock.advance(TTL + timedelta(seconds=1))
    assert budget.app.reap_expired() == 1
    [record] = _records(budget, tokens)
    assert (record.request_id, record.outcome, record.cost_micros, record.success) == (
        "crashed",
        pb.USAGE_OUTCOME_ABANDONED,
        0,
        False,
    )
    assert record.reservation_id == held.reservation_id
    stats = budget.stub.GetUsageStats(
        pb.GetUsageStatsRequest(user_id="u1", period=pb.STATS_PERIOD_DAY), metadata=tokens.admin()
    )
    assert stats.total_generations == 1 and stats.total_cost_micros == 0
    result = budget.stub.ReconcileLedger(pb.ReconcileLedgerRequest(), metadata=tokens.admin())
    assert result.consistent, result.differences


@pytest.mark.parametrize("late", ["commit", "release"])
def test_a_late_settlement_amends_the_abandoned_record_keeping_one_record(
    budget, tokens, clock, late: str
) -> None:
    held = reserve(budget, tokens, 80_000, "slow")
    clock.advance(TTL + timedelta(seconds=1))
    assert budget.app.reap_expired() == 1
    usage = pb.UsageRecord(model="gpt-image-1", size="1024x1024", quality=2)
    if late == "commit":
        budget.stub.CommitReservation(
            pb.CommitReservationRequest(
                reservation_id=held.reservation_id, actual_cost_micros=42_000, usage=usage
            ),
            metadata=tokens.service(),
        )
        expected = (pb.USAGE_OUTCOME_GENERATED, 42_000)
    else:
        budget.stub.ReleaseReservation(
            pb.ReleaseReservationRequest(reservation_id=held.reservation_id, usage=usage),
            metadata=tokens.service(),
        )
        expected = (pb.USAGE_OUTCOME_FAILED, 0)
    [record] = _records(budget, tokens)
    assert (record.outcome, record.cost_micros) == expected
    assert (record.request_id, record.reservation_id) == ("slow", held.reservation_id)
    stats = budget.stub.GetUsageStats(
        pb.GetUsageStatsRequest(user_id="u1", period=pb.STATS_PERIOD_DAY), metadata=tokens.admin()
    )
    assert stats.total_generations == 1 and stats.total_cost_micros == expected[1]
    result = budget.stub.ReconcileLedger(pb.ReconcileLedgerRequest(), metadata=tokens.admin())
    assert result.consistent, result.differences


def test_the_ledger_allows_no_other_change(budget, tokens, clock) -> None:
    """Only an abandoned record may be amended, and only into a settled one of
    the same attempt; everything else stays append-only."""
    held = reserve(budget, tokens, 80_000, "k1")
    budget.stub.CommitReservation(
        pb.CommitReservationRequest(reservation_id=held.reservation_id, actual_cost_micros=10),
        metadata=tokens.service(),
    )
    reserve(budget, tokens, 80_000, "k2")
    clock.advance(TTL + timedelta(seconds=1))
    assert budget.app.reap_expired() == 1
    for where, change in (
        ("request_id = 'k1'", "cost_micros = 0"),
        ("request_id = 'k2'", "user_id = 'someone-else'"),
        ("request_id = 'k2'", "request_id = 'k3', outcome = 'generated'"),
    ):
        with pytest.raises(DBAPIError), budget.app.sessions.begin() as session:
            session.execute(text(f"UPDATE budget_usage_records SET {change} WHERE {where}"))
    with pytest.raises(DBAPIError), budget.app.sessions.begin() as session:
        session.execute(text("DELETE FROM budget_usage_records WHERE request_id = 'k2'"))


def test_a_commit_far_above_its_hold_is_charged_at_the_cap_and_logged(
    budget, tokens, caplog
) -> None:
    """A provider reporting an absurd usage cannot wedge the windows: the
    commit charges at most MAX_COMMIT_FACTOR times the hold, as overrun."""
    held = reserve(budget, tokens, 50_000, "absurd")
    with caplog.at_level("ERROR", logger="recipeimage.budget.reservations"):
        reply = budget.stub.CommitReservation(
            pb.CommitReservationRequest(
                reservation_id=held.reservation_id, actual_cost_micros=900_000_000
            ),
            metadata=tokens.service(),
        )
    cap = 50_000 * MAX_COMMIT_FACTOR
    assert reply.reservation.committed_micros == cap
    assert any("capped" in r.getMessage() for r in caplog.records)
    [record] = _records(budget, tokens)
    assert record.cost_micros == cap
    daily = counters(budget, "user", "day", TODAY, "u1")
    assert (daily.spent_micros, daily.overrun_micros) == (cap, cap - 50_000)
    result = budget.stub.ReconcileLedger(pb.ReconcileLedgerRequest(), metadata=tokens.admin())
    assert result.consistent, result.differences
