"""RecordUsage (the append-only ledger) and GetUsageStats over calendar periods."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.common.v1 import image_quality_pb2
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from services.common.status import rich_details
from tests.budget.conftest import usage_count


def record(budget, metadata, **fields):  # type: ignore[no-untyped-def]
    return budget.stub.RecordUsage(
        pb.RecordUsageRequest(usage=pb.UsageRecord(**fields)), metadata=metadata
    )


def cache_hit(request_id: str, user_id: str = "u1", saved: int = 40_000) -> dict:
    return {
        "request_id": request_id,
        "user_id": user_id,
        "outcome": pb.USAGE_OUTCOME_CACHE_HIT_EXACT,
        "success": True,
        "cost_saved_micros": saved,
    }


def test_record_usage_stores_every_field(budget, tokens, clock) -> None:
    response = record(
        budget,
        tokens.service(),
        request_id="req-1",
        user_id="u1",
        recipe_id="recipe-7",
        prompt="Overhead photo of a lemon tart",
        size="1024x1536",
        quality=image_quality_pb2.IMAGE_QUALITY_HIGH,
        model="gpt-image-1.5",
        provider="openai",
        outcome=pb.USAGE_OUTCOME_CACHE_HIT_SIMILAR,
        success=True,
        cost_saved_micros=133_000,
        input_tokens=20,
        output_tokens=6_240,
        generation_time_ms=12,
        cached=True,
        cache_hit="similar",
    )
    stored = response.usage
    assert not response.duplicate
    assert stored.quality == image_quality_pb2.IMAGE_QUALITY_HIGH
    assert stored.prompt_length == len("Overhead photo of a lemon tart")
    assert (stored.model, stored.provider, stored.size) == ("gpt-image-1.5", "openai", "1024x1536")
    assert (stored.input_tokens, stored.output_tokens) == (20, 6_240)
    assert stored.outcome == pb.USAGE_OUTCOME_CACHE_HIT_SIMILAR
    assert stored.cached and stored.cache_hit == "similar"
    assert stored.create_time.ToDatetime(tzinfo=UTC) == clock.now()
    saved = budget.app.metrics.registry.get_sample_value(
        "recipeimage_cost_saved_micros_total", {"service": "budget"}
    )
    assert saved == 133_000


def test_record_usage_takes_no_spend(budget, tokens) -> None:
    for fields, field in [
        ({"outcome": pb.USAGE_OUTCOME_GENERATED}, "usage.outcome"),
        ({"outcome": pb.USAGE_OUTCOME_FAILED, "cost_micros": 1}, "usage.cost_micros"),
    ]:
        with pytest.raises(grpc.RpcError) as raised:
            record(budget, tokens.service(), request_id="r", user_id="u1", **fields)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        bad = next(d for d in rich_details(raised.value) if d.DESCRIPTOR.name == "BadRequest")
        assert [v.field for v in bad.field_violations] == [field]
    assert usage_count(budget) == 0


def test_success_is_never_claimed_for_an_attempt_that_served_nothing(budget, tokens) -> None:
    refused = record(
        budget,
        tokens.service(),
        request_id="no",
        user_id="u1",
        outcome=pb.USAGE_OUTCOME_REFUSED,
        success=True,
    ).usage
    assert not refused.success and not refused.cached
    hit = record(budget, tokens.service(), **cache_hit("hit")).usage
    assert hit.success and hit.cached and hit.cache_hit == "exact"


def test_a_settled_attempt_is_a_success_unless_the_caller_says_otherwise(budget, tokens) -> None:
    def settle(key: str, usage: pb.UsageRecord | None, commit: bool = True) -> None:
        held = budget.stub.ReserveBudget(
            pb.ReserveBudgetRequest(user_id="u1", amount_micros=1_000, idempotency_key=key),
            metadata=tokens.service(),
        ).reservation
        if commit:
            budget.stub.CommitReservation(
                pb.CommitReservationRequest(
                    reservation_id=held.reservation_id, actual_cost_micros=900, usage=usage
                ),
                metadata=tokens.service(),
            )
        else:
            budget.stub.ReleaseReservation(
                pb.ReleaseReservationRequest(reservation_id=held.reservation_id, usage=usage),
                metadata=tokens.service(),
            )

    settle("plain", None)  # GENERATED, a success
    # Paid for, but the image was lost: the caller says so.
    settle("lost", pb.UsageRecord(outcome=pb.USAGE_OUTCOME_GENERATED, error_message="lost"))
    settle("gave-up", None, commit=False)  # FAILED
    assert usage_count(budget, request_id="plain", outcome="generated", success=True) == 1
    assert usage_count(budget, request_id="lost", outcome="generated", success=False) == 1
    assert usage_count(budget, request_id="gave-up", outcome="failed", success=False) == 1


def test_a_duplicate_request_id_returns_the_stored_record_and_writes_nothing(
    budget, tokens, clock
) -> None:
    first = record(budget, tokens.service(), **cache_hit("req-1", saved=40_000)).usage
    clock.advance(datetime.resolution * 1000)
    again = record(budget, tokens.service(), **cache_hit("req-1", saved=99_999))
    assert again.duplicate
    assert again.usage == first
    assert usage_count(budget) == 1


def test_request_ids_are_each_users_own(budget, tokens) -> None:
    """One user cannot pre-claim another's request id (issue 7): the same id
    is another attempt when another user sends it."""
    first = record(budget, tokens.service(), **cache_hit("req-1", user_id="alice"))
    second = record(budget, tokens.service(), **cache_hit("req-1", user_id="bob"))
    assert (first.duplicate, second.duplicate) == (False, False)
    assert usage_count(budget) == 2
    again = record(budget, tokens.service(), **cache_hit("req-1", user_id="bob"))
    assert again.duplicate
    assert usage_count(budget) == 2


def test_a_user_token_cannot_write_the_ledger(budget, tokens) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        record(budget, tokens.user("u7"), **cache_hit("req-1", user_id=""))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert usage_count(budget) == 0


def test_record_usage_names_each_bad_field(budget, tokens) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        record(
            budget,
            tokens.service(),
            user_id="u1",
            cost_micros=-1,
            cost_saved_micros=-2,
            prompt_length=-3,
            reservation_id="abc",
            cache_hit="maybe",
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = next(d for d in rich_details(raised.value) if d.DESCRIPTOR.name == "BadRequest")
    assert sorted(v.field for v in bad.field_violations) == [
        "usage.cache_hit",
        "usage.cost_micros",
        "usage.cost_saved_micros",
        "usage.outcome",
        "usage.prompt_length",
        "usage.request_id",
        "usage.reservation_id",
    ]
    assert usage_count(budget) == 0


def stats(budget, tokens, period: int, user: str = "u1") -> pb.GetUsageStatsResponse:
    return budget.stub.GetUsageStats(
        pb.GetUsageStatsRequest(user_id=user, period=period), metadata=tokens.service()
    )


def at(clock, budget, tokens, when: datetime, **fields) -> None:  # type: ignore[no-untyped-def]
    """Record an attempt at when: a generation (key, cost) is reserved and committed."""
    clock.set(when)
    if "key" not in fields:
        record(budget, tokens.service(), **fields)
        return
    held = budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(
            user_id=fields["user_id"], amount_micros=fields["cost"], idempotency_key=fields["key"]
        ),
        metadata=tokens.service(),
    ).reservation
    budget.stub.CommitReservation(
        pb.CommitReservationRequest(
            reservation_id=held.reservation_id, actual_cost_micros=fields["cost"]
        ),
        metadata=tokens.service(),
    )


def generated(request_id: str, cost: int, user_id: str = "u1") -> dict:
    return {"key": request_id, "cost": cost, "user_id": user_id}


def failed(request_id: str) -> dict:
    return {"request_id": request_id, "user_id": "u1", "outcome": pb.USAGE_OUTCOME_FAILED}


def test_stats_over_day_week_and_month(budget, tokens, clock) -> None:
    def utc(day: int, hour: int = 12, month: int = 3) -> datetime:
        return datetime(2026, month, day, hour, tzinfo=UTC)

    at(clock, budget, tokens, utc(27, month=2), **generated("feb", 1_000))
    at(clock, budget, tokens, utc(2), **generated("mon-last-week", 100))
    at(clock, budget, tokens, utc(9, 0), **generated("monday", 200))
    at(clock, budget, tokens, utc(10), **failed("tuesday-failed"))
    at(clock, budget, tokens, utc(11, 8), **generated("today", 301))
    at(clock, budget, tokens, utc(11, 10), **cache_hit("today-hit", saved=40_000))
    at(clock, budget, tokens, utc(11, 10), **generated("other-user", 5_000, user_id="u2"))
    clock.set(utc(11, 18))  # Wednesday 11 March

    day = stats(budget, tokens, pb.STATS_PERIOD_DAY)
    assert day.start_time.ToDatetime(tzinfo=UTC) == utc(11, 0)
    assert day.end_time.ToDatetime(tzinfo=UTC) == utc(12, 0)
    assert (day.total_generations, day.total_cost_micros) == (2, 301)
    assert (day.successful_generations, day.failed_generations) == (2, 0)
    assert day.average_cost_per_generation_micros == 150  # 301 // 2
    assert (day.cache_hits, day.cost_saved_micros) == (1, 40_000)
    assert day.last_generation_time.ToDatetime(tzinfo=UTC) == utc(11, 10)

    week = stats(budget, tokens, pb.STATS_PERIOD_WEEK)
    assert week.start_time.ToDatetime(tzinfo=UTC) == utc(9, 0)
    assert (week.total_generations, week.total_cost_micros) == (4, 501)
    assert (week.successful_generations, week.failed_generations) == (3, 1)
    assert week.average_cost_per_generation_micros == 125

    month = stats(budget, tokens, pb.STATS_PERIOD_MONTH)
    assert (month.total_generations, month.total_cost_micros) == (5, 601)
    assert month.average_cost_per_generation_micros == 120

    for response in (day, week, month):
        assert (response.monthly_usage, response.monthly_cost_micros) == (5, 601)
        assert response.user_id == "u1"


def test_a_week_across_a_month_boundary_keeps_monthly_figures_to_the_month(
    budget, tokens, clock
) -> None:
    at(clock, budget, tokens, datetime(2026, 3, 30, 9, tzinfo=UTC), **generated("mon", 100))
    at(clock, budget, tokens, datetime(2026, 4, 1, 9, tzinfo=UTC), **generated("wed", 10))
    week = stats(budget, tokens, pb.STATS_PERIOD_WEEK)
    assert (week.total_generations, week.total_cost_micros) == (2, 110)
    assert (week.monthly_usage, week.monthly_cost_micros) == (1, 10)


def test_stats_without_attempts(budget, tokens) -> None:
    empty = stats(budget, tokens, pb.STATS_PERIOD_MONTH)
    assert empty.total_generations == 0
    assert empty.average_cost_per_generation_micros == 0
    assert not empty.HasField("last_generation_time")
    assert empty.period == pb.STATS_PERIOD_MONTH


def test_stats_need_a_period(budget, tokens) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stats(budget, tokens, pb.STATS_PERIOD_UNSPECIFIED)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad = next(d for d in rich_details(raised.value) if d.DESCRIPTOR.name == "BadRequest")
    assert [v.field for v in bad.field_violations] == ["period"]


def test_commit_counts_in_the_spend_metric_once(budget, tokens) -> None:
    held = budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id="u1", amount_micros=50_000, idempotency_key="k"),
        metadata=tokens.service(),
    ).reservation
    for _ in range(2):
        budget.stub.CommitReservation(
            pb.CommitReservationRequest(
                reservation_id=held.reservation_id, actual_cost_micros=42_000
            ),
            metadata=tokens.service(),
        )
    spent = budget.app.metrics.registry.get_sample_value(
        "recipeimage_spend_micros_total", {"service": "budget"}
    )
    assert spent == 42_000


def test_a_fallback_is_recorded_as_failed_with_the_fallback_used(budget, tokens, clock) -> None:
    stored = record(
        budget,
        tokens.service(),
        request_id="fb",
        user_id="u1",
        outcome=pb.USAGE_OUTCOME_FALLBACK,
        success=True,
        error_message="provider timed out",
    ).usage
    assert stored.outcome == pb.USAGE_OUTCOME_FALLBACK
    assert stored.fallback_used and not stored.success and stored.cost_micros == 0
    day = stats(budget, tokens, pb.STATS_PERIOD_DAY)
    assert (day.total_generations, day.failed_generations, day.fallback_generations) == (1, 1, 1)


def test_a_recorded_attempt_cannot_be_reserved_under_the_same_key(budget, tokens) -> None:
    """One attempt, one record: a key whose attempt is in the ledger cannot hold
    money (its spend could not be recorded), and a key holding money cannot be
    recorded without it."""
    record(
        budget, tokens.service(), request_id="k1", user_id="u1", outcome=pb.USAGE_OUTCOME_REFUSED
    )
    with pytest.raises(grpc.RpcError) as raised:
        budget.stub.ReserveBudget(
            pb.ReserveBudgetRequest(user_id="u1", amount_micros=1_000, idempotency_key="k1"),
            metadata=tokens.service(),
        )
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = next(d for d in rich_details(raised.value) if d.DESCRIPTOR.name == "ErrorInfo")
    assert info.reason == "ATTEMPT_ALREADY_RECORDED"

    budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id="u1", amount_micros=1_000, idempotency_key="k2"),
        metadata=tokens.service(),
    )
    with pytest.raises(grpc.RpcError) as raised:
        record(budget, tokens.service(), **cache_hit("k2"))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = next(d for d in rich_details(raised.value) if d.DESCRIPTOR.name == "ErrorInfo")
    assert info.reason == "ATTEMPT_HAS_RESERVATION"
    assert usage_count(budget) == 1
    assert usage_count(budget, request_id="k2") == 0


def test_the_ledger_is_append_only_in_the_database(budget, tokens) -> None:
    record(budget, tokens.service(), **cache_hit("r1"))
    for statement in (
        "UPDATE budget_usage_records SET cost_micros = 1",
        "DELETE FROM budget_usage_records",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            budget.app.sessions.begin() as session,
        ):
            session.execute(text(statement))
    assert usage_count(budget, request_id="r1", cost_micros=0) == 1


def dish_recognition(request_id: str, cost: int = 77) -> dict:
    return {
        "request_id": request_id,
        "user_id": "u1",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "outcome": pb.USAGE_OUTCOME_GENERATED,
        "cost_micros": cost,
        "input_tokens": 412,
        "output_tokens": 24,
        "kind": pb.USAGE_KIND_DISH_RECOGNITION,
    }


def test_a_dish_recognition_is_recorded_with_its_cost_and_kind_outside_the_limits(
    budget, tokens
) -> None:
    stored = record(budget, tokens.service(), **dish_recognition("dish-1")).usage
    assert (stored.kind, stored.cost_micros, stored.outcome) == (
        pb.USAGE_KIND_DISH_RECOGNITION,
        77,
        pb.USAGE_OUTCOME_GENERATED,
    )
    image = record(budget, tokens.service(), **cache_hit("img-1")).usage
    assert image.kind == pb.USAGE_KIND_IMAGE
    day = stats(budget, tokens, pb.STATS_PERIOD_DAY)
    assert day.total_cost_micros == 77
    [row] = [row for row in day.breakdown if row.model == "gpt-4o-mini"]
    assert (row.generations, row.cost_micros) == (1, 77)
    # Not held against the limits: no window counts it.
    limits = budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u1"), metadata=tokens.service())
    assert all(window.spent_micros == 0 for window in limits.windows)
    reconciliation = budget.stub.ReconcileLedger(
        pb.ReconcileLedgerRequest(), metadata=tokens.admin()
    )
    assert reconciliation.consistent, reconciliation.differences


def test_a_dish_recognition_serves_no_image_and_an_image_still_takes_no_spend(
    budget, tokens
) -> None:
    for fields, field in [
        ({**dish_recognition("d"), "outcome": pb.USAGE_OUTCOME_REFUSED}, "usage.outcome"),
        ({**dish_recognition("d"), "cached": True}, "usage.kind"),
        ({**dish_recognition("d"), "kind": pb.USAGE_KIND_IMAGE}, "usage.outcome"),
    ]:
        with pytest.raises(grpc.RpcError) as raised:
            record(budget, tokens.service(), **fields)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        bad = next(d for d in rich_details(raised.value) if d.DESCRIPTOR.name == "BadRequest")
        assert field in [v.field for v in bad.field_violations]
    assert usage_count(budget) == 0
