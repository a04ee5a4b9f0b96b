"""ReserveBudget, CommitReservation and ReleaseReservation over real gRPC, on
SQLite and PostgreSQL: limits, idempotency, and what each leaves behind."""

from __future__ import annotations

from datetime import date, timedelta

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.domain.limits import TierLimits
from services.common.status import rich_details
from tests.budget.conftest import T0, counters, reservation_states, usage_count
from tests.support.budget_server import running_budget, tiers

TODAY = date(2026, 3, 10)
MONTH = date(2026, 3, 1)


def reserve(budget, tokens, amount: int, key: str, user: str = "u1"):  # type: ignore[no-untyped-def]
    return budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id=user, amount_micros=amount, idempotency_key=key),
        metadata=tokens.service(),
    )


def refusal(call) -> tuple[grpc.StatusCode, dict]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call()
    details = {type(d).__name__: d for d in rich_details(raised.value)}
    return raised.value.code(), details


def test_reserve_holds_the_amount_in_all_four_windows(budget, tokens) -> None:
    response = reserve(budget, tokens, 70_000, "attempt-1")
    held = response.reservation
    assert not response.replayed
    assert held.user_id == "u1"
    assert held.idempotency_key == "attempt-1"
    assert held.amount_micros == 70_000
    assert held.state == pb.RESERVATION_STATE_HELD
    assert len(held.reservation_id) == 32
    assert held.create_time.ToDatetime() == T0.replace(tzinfo=None)
    assert held.expire_time.ToDatetime() == (T0 + timedelta(seconds=900)).replace(tzinfo=None)

    limits = budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u1"), metadata=tokens.service())
    assert [(w.kind, w.reserved_micros, w.spent_micros) for w in limits.windows] == [
        (pb.WINDOW_KIND_USER_DAILY, 70_000, 0),
        (pb.WINDOW_KIND_USER_MONTHLY, 70_000, 0),
        (pb.WINDOW_KIND_SYSTEM_DAILY, 70_000, 0),
        (pb.WINDOW_KIND_SYSTEM_MONTHLY, 70_000, 0),
    ]
    assert limits.windows[0].remaining_micros == 500_000 - 70_000


def test_commit_moves_the_hold_to_spend_and_writes_the_usage_record(budget, tokens) -> None:
    held = reserve(budget, tokens, 80_000, "attempt-1").reservation
    usage = pb.UsageRecord(
        request_id="ignored",
        user_id="someone-else",
        cost_micros=1,
        recipe_id="recipe-9",
        prompt="A bowl of broccoli soup",
        size="1024x1024",
        model="gpt-image-1.5",
        provider="openai",
        input_tokens=12,
        output_tokens=4160,
        generation_time_ms=8_500,
    )
    committed = budget.stub.CommitReservation(
        pb.CommitReservationRequest(
            reservation_id=held.reservation_id, actual_cost_micros=63_000, usage=usage
        ),
        metadata=tokens.service(),
    ).reservation
    assert committed.state == pb.RESERVATION_STATE_COMMITTED
    assert committed.committed_micros == 63_000
    assert not committed.overrun
    for scope, span, start in [
        ("user", "day", TODAY),
        ("user", "month", MONTH),
        ("system", "day", TODAY),
        ("system", "month", MONTH),
    ]:
        window = counters(budget, scope, span, start, "u1")
        assert (window.spent_micros, window.reserved_micros) == (63_000, 0), (scope, span)

    stats = budget.stub.GetUsageStats(
        pb.GetUsageStatsRequest(user_id="u1", period=pb.STATS_PERIOD_DAY),
        metadata=tokens.service(),
    )
    assert (stats.total_generations, stats.total_cost_micros, stats.successful_generations) == (
        1,
        63_000,
        1,
    )
    # The record's ids and cost come from the reservation, whatever the caller sent.
    assert usage_count(budget, request_id="attempt-1", user_id="u1") == 1
    assert usage_count(budget, reservation_id=held.reservation_id) == 1
    assert usage_count(budget) == 1


def test_release_gives_the_hold_back_and_records_a_failed_attempt(budget, tokens) -> None:
    held = reserve(budget, tokens, 80_000, "attempt-1").reservation
    released = budget.stub.ReleaseReservation(
        pb.ReleaseReservationRequest(
            reservation_id=held.reservation_id,
            usage=pb.UsageRecord(error_message="provider timed out", cost_micros=99),
        ),
        metadata=tokens.service(),
    ).reservation
    assert released.state == pb.RESERVATION_STATE_RELEASED
    assert counters(budget, "user", "day", TODAY, "u1").reserved_micros == 0
    assert counters(budget, "system", "month", MONTH).reserved_micros == 0
    assert counters(budget, "user", "day", TODAY, "u1").spent_micros == 0
    stats = budget.stub.GetUsageStats(
        pb.GetUsageStatsRequest(user_id="u1", period=pb.STATS_PERIOD_DAY),
        metadata=tokens.service(),
    )
    assert (stats.total_generations, stats.failed_generations, stats.total_cost_micros) == (
        1,
        1,
        0,
    )


def test_daily_limit_refusal_carries_reason_quota_and_retry_until_midnight(
    database_url, authenticator, tokens, clock
) -> None:
    clock.set(T0.replace(hour=21, minute=30))  # 2 h 30 min before UTC midnight
    with running_budget(database_url, authenticator, clock=clock) as budget:
        for number in range(6):  # 6 x 80,000 = 480,000 of the free tier's 500,000
            reserve(budget, tokens, 80_000, f"a{number}")
        code, details = refusal(lambda: reserve(budget, tokens, 80_000, "a6"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        info = details["ErrorInfo"]
        assert (info.reason, info.domain) == ("DAILY_LIMIT_EXCEEDED", "recipeimage")
        assert dict(info.metadata) == {
            "limit_micros": "500000",
            "spent_micros": "0",
            "reserved_micros": "480000",
            "requested_micros": "80000",
            "window": "user_daily",
            "limit_source": "tier:free",
        }
        assert details["QuotaFailure"].violations[0].subject == "user:u1"
        assert details["RetryInfo"].retry_delay.ToTimedelta() == timedelta(hours=2, minutes=30)
        # The refusal held nothing anywhere.
        assert counters(budget, "user", "day", TODAY, "u1").reserved_micros == 480_000
        assert counters(budget, "system", "day", TODAY).reserved_micros == 480_000
        # What still fits is granted.
        assert reserve(budget, tokens, 20_000, "a7").reservation.amount_micros == 20_000


def test_per_generation_limit(budget, tokens) -> None:
    code, details = refusal(lambda: reserve(budget, tokens, 80_001, "too-dear"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details["ErrorInfo"].reason == "PER_GENERATION_LIMIT_EXCEEDED"
    assert details["ErrorInfo"].metadata["limit_micros"] == "80000"
    assert counters(budget, "user", "day", TODAY, "u1").reserved_micros == 0
    # A premium user may spend 0.12 USD on one image.
    budget.set_tier("u1", "premium")
    assert reserve(budget, tokens, 120_000, "hd").reservation.amount_micros == 120_000


def test_monthly_limit(database_url, authenticator, tokens, clock) -> None:
    small = tiers(free=TierLimits(daily_micros=100, monthly_micros=250, per_generation_micros=100))
    with running_budget(database_url, authenticator, clock=clock, tiers=small) as budget:
        reserve(budget, tokens, 100, "d1")
        clock.advance(timedelta(days=1))
        reserve(budget, tokens, 100, "d2")
        clock.advance(timedelta(days=1))
        reserve(budget, tokens, 50, "d3-a")
        code, details = refusal(lambda: reserve(budget, tokens, 50, "d3-b"))
        assert details["ErrorInfo"].reason == "MONTHLY_LIMIT_EXCEEDED"
        assert details["ErrorInfo"].metadata["window"] == "user_monthly"
        # Until 1 April 00:00 UTC.
        retry = details["RetryInfo"].retry_delay.ToTimedelta()
        assert retry == date(2026, 4, 1) - date(2026, 3, 12) - timedelta(hours=12)


def test_system_limits_cap_all_users_together(database_url, authenticator, tokens, clock) -> None:
    with running_budget(
        database_url,
        authenticator,
        clock=clock,
        system_daily_limit_micros=150_000,
        system_monthly_limit_micros=1_000_000,
    ) as budget:
        reserve(budget, tokens, 80_000, "k1", user="alice")
        reserve(budget, tokens, 70_000, "k2", user="bob")
        code, details = refusal(lambda: reserve(budget, tokens, 1, "k3", user="carol"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details["ErrorInfo"].reason == "SYSTEM_DAILY_LIMIT_EXCEEDED"
        assert details["QuotaFailure"].violations[0].subject == "system"
        assert counters(budget, "user", "day", TODAY, "carol").reserved_micros == 0

    with running_budget(
        database_url,
        authenticator,
        clock=clock,
        system_daily_limit_micros=10_000_000,
        system_monthly_limit_micros=200_000,
    ) as budget:
        code, details = refusal(lambda: reserve(budget, tokens, 60_000, "k4", user="dave"))
        assert details["ErrorInfo"].reason == "SYSTEM_MONTHLY_LIMIT_EXCEEDED"


def test_check_budget_answers_like_reserve_and_changes_nothing(budget, tokens) -> None:
    reserve(budget, tokens, 80_000, "k1")

    def check(amount: int) -> pb.CheckBudgetResponse:
        return budget.stub.CheckBudget(
            pb.CheckBudgetRequest(user_id="u1", amount_micros=amount), metadata=tokens.service()
        )

    allowed = check(80_000)
    assert allowed.allowed and allowed.reason == ""
    assert allowed.windows[0].reserved_micros == 80_000
    assert check(80_001).reason == "PER_GENERATION_LIMIT_EXCEEDED"
    for number in range(5):
        reserve(budget, tokens, 80_000, f"fill-{number}")
    refused = check(30_000)
    assert (refused.allowed, refused.reason) == (False, "DAILY_LIMIT_EXCEEDED")
    assert check(20_000).allowed
    assert counters(budget, "user", "day", TODAY, "u1").reserved_micros == 480_000


def test_the_same_key_returns_the_same_reservation_and_holds_nothing_more(budget, tokens) -> None:
    first = reserve(budget, tokens, 50_000, "attempt-1")
    again = reserve(budget, tokens, 50_000, "attempt-1")
    assert again.replayed and not first.replayed
    assert again.reservation == first.reservation
    assert counters(budget, "user", "day", TODAY, "u1").reserved_micros == 50_000

    budget.stub.CommitReservation(
        pb.CommitReservationRequest(
            reservation_id=first.reservation.reservation_id, actual_cost_micros=40_000
        ),
        metadata=tokens.service(),
    )
    # Replayed in whatever state it is now; the amount asked for does not matter.
    after = reserve(budget, tokens, 10_000, "attempt-1")
    assert after.replayed
    assert after.reservation.state == pb.RESERVATION_STATE_COMMITTED
    assert after.reservation.amount_micros == 50_000
    window = counters(budget, "user", "day", TODAY, "u1")
    assert (window.spent_micros, window.reserved_micros) == (40_000, 0)


def test_idempotency_keys_are_each_users_own(budget, tokens) -> None:
    """One user cannot pre-claim another's key (issue 7): the same key from
    another user is another reservation, and each user's retry is its own."""
    alices = reserve(budget, tokens, 50_000, "shared-key", user="alice")
    bobs = reserve(budget, tokens, 30_000, "shared-key", user="bob")
    assert not bobs.replayed
    assert bobs.reservation.reservation_id != alices.reservation.reservation_id
    assert counters(budget, "user", "day", TODAY, "bob").reserved_micros == 30_000
    again = reserve(budget, tokens, 30_000, "shared-key", user="bob")
    assert again.replayed
    assert again.reservation.reservation_id == bobs.reservation.reservation_id


def test_commit_is_idempotent_and_charges_once(budget, tokens) -> None:
    held = reserve(budget, tokens, 80_000, "attempt-1").reservation
    request = pb.CommitReservationRequest(
        reservation_id=held.reservation_id, actual_cost_micros=70_000
    )
    first = budget.stub.CommitReservation(request, metadata=tokens.service()).reservation
    second = budget.stub.CommitReservation(
        pb.CommitReservationRequest(reservation_id=held.reservation_id, actual_cost_micros=1),
        metadata=tokens.service(),
    ).reservation
    assert second == first
    assert second.committed_micros == 70_000
    window = counters(budget, "system", "day", TODAY)
    assert (window.spent_micros, window.reserved_micros) == (70_000, 0)
    assert usage_count(budget) == 1


def test_release_is_idempotent_and_records_once(budget, tokens) -> None:
    held = reserve(budget, tokens, 80_000, "attempt-1").reservation
    request = pb.ReleaseReservationRequest(reservation_id=held.reservation_id)
    first = budget.stub.ReleaseReservation(request, metadata=tokens.service()).reservation
    second = budget.stub.ReleaseReservation(request, metadata=tokens.service()).reservation
    assert first == second
    assert first.state == pb.RESERVATION_STATE_RELEASED
    assert counters(budget, "user", "month", MONTH, "u1").reserved_micros == 0
    assert usage_count(budget) == 1


def test_commit_may_exceed_the_hold_the_money_was_spent(budget, tokens) -> None:
    held = reserve(budget, tokens, 50_000, "attempt-1").reservation
    budget.stub.CommitReservation(
        pb.CommitReservationRequest(reservation_id=held.reservation_id, actual_cost_micros=65_000),
        metadata=tokens.service(),
    )
    window = counters(budget, "user", "day", TODAY, "u1")
    assert (window.spent_micros, window.reserved_micros) == (65_000, 0)


def test_settling_in_the_wrong_state(budget, tokens) -> None:
    released = reserve(budget, tokens, 50_000, "r").reservation
    budget.stub.ReleaseReservation(
        pb.ReleaseReservationRequest(reservation_id=released.reservation_id),
        metadata=tokens.service(),
    )
    code, details = refusal(
        lambda: budget.stub.CommitReservation(
            pb.CommitReservationRequest(
                reservation_id=released.reservation_id, actual_cost_micros=1
            ),
            metadata=tokens.service(),
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details["ErrorInfo"].reason == "RESERVATION_RELEASED"

    committed = reserve(budget, tokens, 50_000, "c").reservation
    budget.stub.CommitReservation(
        pb.CommitReservationRequest(reservation_id=committed.reservation_id, actual_cost_micros=5),
        metadata=tokens.service(),
    )
    code, details = refusal(
        lambda: budget.stub.ReleaseReservation(
            pb.ReleaseReservationRequest(reservation_id=committed.reservation_id),
            metadata=tokens.service(),
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details["ErrorInfo"].reason == "RESERVATION_COMMITTED"
    assert counters(budget, "user", "day", TODAY, "u1").spent_micros == 5

    code, _ = refusal(
        lambda: budget.stub.CommitReservation(
            pb.CommitReservationRequest(reservation_id="0" * 32, actual_cost_micros=1),
            metadata=tokens.service(),
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert set(reservation_states(budget).values()) == {"released", "committed"}


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (pb.ReserveBudgetRequest(user_id="u1", idempotency_key="k"), ["amount_micros"]),
        (
            pb.ReserveBudgetRequest(user_id="u1", amount_micros=-5, idempotency_key="k" * 201),
            ["amount_micros", "idempotency_key"],
        ),
        (pb.ReserveBudgetRequest(amount_micros=5, idempotency_key="k"), ["user_id"]),
    ],
)
def test_reserve_names_each_bad_field(budget, tokens, request_, fields) -> None:
    code, details = refusal(lambda: budget.stub.ReserveBudget(request_, metadata=tokens.service()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(v.field for v in details["BadRequest"].field_violations) == fields


def test_settle_validation(budget, tokens) -> None:
    code, details = refusal(
        lambda: budget.stub.CommitReservation(
            pb.CommitReservationRequest(
                actual_cost_micros=-1, usage=pb.UsageRecord(prompt_length=-2)
            ),
            metadata=tokens.service(),
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(v.field for v in details["BadRequest"].field_violations) == [
        "actual_cost_micros",
        "reservation_id",
        "usage.prompt_length",
    ]
    held = reserve(budget, tokens, 50_000, "k").reservation
    code, details = refusal(
        lambda: budget.stub.ReleaseReservation(
            pb.ReleaseReservationRequest(
                reservation_id=held.reservation_id,
                usage=pb.UsageRecord(outcome=pb.USAGE_OUTCOME_GENERATED),
            ),
            metadata=tokens.service(),
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details["BadRequest"].field_violations[0].field == "usage.outcome"
    assert counters(budget, "user", "day", TODAY, "u1").reserved_micros == 50_000
