"""Protobuf messages <-> the budget service's plain values. No rules here."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2
from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.common.v1 import image_quality_pb2

from services.budget.domain import Outcome, Reservation, ReservationState, Usage
from services.budget.limits import Tier
from services.budget.reservations import WindowState
from services.budget.stats import StatsPeriod, UsageStats
from services.budget.windows import Scope, Span

_TIERS = {
    Tier.FREE: pb.USER_TIER_FREE,
    Tier.PREMIUM: pb.USER_TIER_PREMIUM,
    Tier.PRO: pb.USER_TIER_PRO,
}
_WINDOW_KINDS = {
    (Scope.USER, Span.DAY): pb.WINDOW_KIND_USER_DAILY,
    (Scope.USER, Span.MONTH): pb.WINDOW_KIND_USER_MONTHLY,
    (Scope.SYSTEM, Span.DAY): pb.WINDOW_KIND_SYSTEM_DAILY,
    (Scope.SYSTEM, Span.MONTH): pb.WINDOW_KIND_SYSTEM_MONTHLY,
}
_STATES = {
    ReservationState.HELD: pb.RESERVATION_STATE_HELD,
    ReservationState.COMMITTED: pb.RESERVATION_STATE_COMMITTED,
    ReservationState.RELEASED: pb.RESERVATION_STATE_RELEASED,
    ReservationState.EXPIRED: pb.RESERVATION_STATE_EXPIRED,
}
_OUTCOMES = {
    Outcome.GENERATED: pb.USAGE_OUTCOME_GENERATED,
    Outcome.CACHE_HIT_EXACT: pb.USAGE_OUTCOME_CACHE_HIT_EXACT,
    Outcome.CACHE_HIT_SIMILAR: pb.USAGE_OUTCOME_CACHE_HIT_SIMILAR,
    Outcome.FAILED: pb.USAGE_OUTCOME_FAILED,
    Outcome.FALLBACK: pb.USAGE_OUTCOME_FALLBACK,
    Outcome.REFUSED: pb.USAGE_OUTCOME_REFUSED,
}
_OUTCOMES_FROM_PROTO = {value: key for key, value in _OUTCOMES.items()}
_QUALITIES = {
    "low": image_quality_pb2.IMAGE_QUALITY_LOW,
    "medium": image_quality_pb2.IMAGE_QUALITY_MEDIUM,
    "high": image_quality_pb2.IMAGE_QUALITY_HIGH,
}
_QUALITIES_FROM_PROTO = {value: key for key, value in _QUALITIES.items()}
_PERIODS_FROM_PROTO = {
    pb.STATS_PERIOD_DAY: StatsPeriod.DAY,
    pb.STATS_PERIOD_WEEK: StatsPeriod.WEEK,
    pb.STATS_PERIOD_MONTH: StatsPeriod.MONTH,
}
_PERIODS = {value: key for key, value in _PERIODS_FROM_PROTO.items()}


def timestamp(instant: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(instant)
    return message


def tier(value: Tier) -> int:
    return _TIERS[value]


def window(state: WindowState) -> pb.Window:
    return pb.Window(
        kind=_WINDOW_KINDS[(state.key.scope, state.key.span)],
        limit_micros=state.limit_micros,
        spent_micros=state.spent_micros,
        reserved_micros=state.reserved_micros,
        remaining_micros=state.remaining_micros,
        start_time=timestamp(state.period.start),
        reset_time=timestamp(state.period.end),
        limit_source=state.source,
    )


def reservation(value: Reservation) -> pb.Reservation:
    return pb.Reservation(
        reservation_id=value.id,
        user_id=value.user_id,
        idempotency_key=value.idempotency_key,
        amount_micros=value.amount_micros,
        state=_STATES[value.state],
        committed_micros=value.committed_micros,
        overrun=value.overrun,
        create_time=timestamp(value.created_at),
        expire_time=timestamp(value.expires_at),
    )


def usage_from_proto(message: pb.UsageRecord) -> Usage:
    """A caller's usage record; unknown enum values read as "not given"."""
    return Usage(
        request_id=message.request_id,
        user_id=message.user_id,
        recipe_id=message.recipe_id,
        prompt=message.prompt,
        prompt_length=message.prompt_length,
        size=message.size,
        quality=_QUALITIES_FROM_PROTO.get(message.quality, ""),
        model=message.model,
        provider=message.provider,
        cost_micros=message.cost_micros,
        success=message.success,
        error_message=message.error_message,
        fallback_used=message.fallback_used,
        generation_time_ms=message.generation_time_ms,
        cached=message.cached,
        cache_hit=message.cache_hit,
        outcome=_OUTCOMES_FROM_PROTO.get(message.outcome),
        cost_saved_micros=message.cost_saved_micros,
        input_tokens=message.input_tokens,
        output_tokens=message.output_tokens,
        reservation_id=message.reservation_id,
    )


def usage(value: Usage) -> pb.UsageRecord:
    message = pb.UsageRecord(
        request_id=value.request_id,
        user_id=value.user_id,
        recipe_id=value.recipe_id,
        prompt=value.prompt,
        prompt_length=value.prompt_length,
        size=value.size,
        quality=_QUALITIES.get(value.quality, image_quality_pb2.IMAGE_QUALITY_UNSPECIFIED),
        model=value.model,
        provider=value.provider,
        cost_micros=value.cost_micros,
        success=value.success,
        error_message=value.error_message,
        fallback_used=value.fallback_used,
        generation_time_ms=value.generation_time_ms,
        cached=value.cached,
        cache_hit=value.cache_hit,
        outcome=_OUTCOMES[value.outcome] if value.outcome else pb.USAGE_OUTCOME_UNSPECIFIED,
        cost_saved_micros=value.cost_saved_micros,
        input_tokens=value.input_tokens,
        output_tokens=value.output_tokens,
        reservation_id=value.reservation_id,
    )
    if value.created_at is not None:
        message.create_time.CopyFrom(timestamp(value.created_at))
    return message


def stats_period_from_proto(value: int) -> StatsPeriod | None:
    return _PERIODS_FROM_PROTO.get(value)


def usage_stats(value: UsageStats) -> pb.GetUsageStatsResponse:
    message = pb.GetUsageStatsResponse(
        user_id=value.user_id,
        period=_PERIODS[value.period],
        start_time=timestamp(value.span.start),
        end_time=timestamp(value.span.end),
        total_generations=value.total_generations,
        total_cost_micros=value.total_cost_micros,
        successful_generations=value.successful_generations,
        failed_generations=value.failed_generations,
        average_cost_per_generation_micros=value.average_cost_per_generation_micros,
        monthly_usage=value.monthly_usage,
        monthly_cost_micros=value.monthly_cost_micros,
        cache_hits=value.cache_hits,
        cost_saved_micros=value.cost_saved_micros,
    )
    if value.last_generation_at is not None:
        message.last_generation_time.CopyFrom(timestamp(value.last_generation_at))
    return message
