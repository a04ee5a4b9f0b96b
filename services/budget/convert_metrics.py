"""Protobuf messages <-> the plain values of system metrics and top users.
No rules here."""

from __future__ import annotations

from typing import cast

from recipeimage.budget.v1 import system_metrics_pb2 as mpb
from recipeimage.common.v1 import image_quality_pb2

from services.budget.domain.system_metrics import (
    Granularity,
    SystemMetrics,
    TopUsersOrder,
    TopUsersPage,
    TopUsersSpan,
)
from services.budget.domain.usage import StatsPeriod
from services.common import protoenum, quality
from services.common.timestamps import to_proto as timestamp

_PERIODS = cast(
    dict[StatsPeriod, mpb.MetricsPeriod.ValueType],
    protoenum.to_proto(StatsPeriod, mpb.MetricsPeriod, "METRICS_PERIOD_"),
)
_PERIODS_FROM_PROTO = protoenum.from_proto(StatsPeriod, mpb.MetricsPeriod, "METRICS_PERIOD_")
_GRANULARITIES = cast(
    dict[Granularity, mpb.TrendGranularity.ValueType],
    protoenum.to_proto(Granularity, mpb.TrendGranularity, "TREND_GRANULARITY_"),
)
_SPANS_FROM_PROTO = protoenum.from_proto(TopUsersSpan, mpb.TopUsersPeriod, "TOP_USERS_PERIOD_")
_ORDERS_FROM_PROTO = protoenum.from_proto(TopUsersOrder, mpb.TopUsersOrder, "TOP_USERS_ORDER_")


def metrics_period_from_proto(value: int) -> StatsPeriod | None:
    return _PERIODS_FROM_PROTO.get(value)


def top_users_span_from_proto(value: int) -> TopUsersSpan | None:
    return _SPANS_FROM_PROTO.get(value)


def top_users_order_from_proto(value: int) -> TopUsersOrder:
    """UNSPECIFIED (and a value this build does not know) ranks by cost."""
    return _ORDERS_FROM_PROTO.get(value, TopUsersOrder.COST)


def system_metrics(value: SystemMetrics, period: StatsPeriod) -> mpb.GetSystemMetricsResponse:
    cache = value.cache
    return mpb.GetSystemMetricsResponse(
        period=_PERIODS[period],
        start_time=timestamp(value.span.start),
        end_time=timestamp(value.span.end),
        time_zone=value.time_zone,
        generations=value.generations,
        total_cost_micros=value.total_cost_micros,
        average_cost_per_generation_micros=value.average_cost_per_generation_micros,
        successful_generations=value.successful_generations,
        cache=mpb.CacheMetrics(
            exact_hits=cache.exact_hits,
            similar_hits=cache.similar_hits,
            exact_hit_rate=cache.rate(cache.exact_hits),
            similar_hit_rate=cache.rate(cache.similar_hits),
            hit_rate=cache.rate(cache.exact_hits + cache.similar_hits),
            cost_saved_micros=cache.cost_saved_micros,
        ),
        outcomes=[
            mpb.OutcomeMetrics(outcome=o.outcome, count=o.count, cost_micros=o.cost_micros)
            for o in value.outcomes
        ],
        failures=[
            mpb.FailureMetrics(outcome=f.outcome, reason=f.reason, count=f.count)
            for f in value.failures
        ],
        spend=[
            mpb.SpendMetrics(
                model=s.model,
                size=s.size,
                quality=image_quality_pb2.ImageQuality.ValueType(quality.to_proto(s.quality)),
                generations=s.generations,
                cost_micros=s.cost_micros,
                cost_saved_micros=s.cost_saved_micros,
            )
            for s in value.spend
        ],
        trend_granularity=_GRANULARITIES[value.granularity],
        trend=[
            mpb.TrendPoint(
                start_time=timestamp(p.start),
                end_time=timestamp(p.end),
                cost_micros=p.cost_micros,
                generations=p.generations,
            )
            for p in value.trend
        ],
    )


def top_users(page: TopUsersPage) -> mpb.ListTopUsersResponse:
    return mpb.ListTopUsersResponse(
        start_time=timestamp(page.period.start),
        end_time=timestamp(page.period.end),
        users=[
            mpb.TopUser(
                rank=u.rank,
                user_id=u.user_id,
                cost_micros=u.cost_micros,
                generations=u.generations,
            )
            for u in page.users
        ],
        next_page_token=page.next_page_token,
    )
