"""Protobuf messages <-> plain values for the management tools (credits, users
near their limits, the export, the simulation). No rules here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from recipeimage.budget.v1 import management_tools_pb2 as tpb
from recipeimage.common.v1 import image_quality_pb2

from services.budget.domain.credits import Credit
from services.budget.domain.export import ExportedRecord, ExportMessage
from services.budget.domain.limits import LimitValues, Tier
from services.budget.domain.near_limits import NearLimitsPage
from services.budget.domain.simulation import REASONS, Replay, Tally
from services.budget.domain.windows import SYSTEM_SUBJECT, Scope, Span, window_name
from services.common import protoenum, quality
from services.common.timestamps import to_proto as timestamp

# LIMIT_WINDOW_USER_DAILY ... by the window's name (user_daily ...).
_WINDOWS: dict[tuple[Scope, Span], int] = {
    (scope, span): tpb.LimitWindow.Value("LIMIT_WINDOW_" + window_name(scope, span).upper())
    for scope in Scope
    for span in Span
}
_WINDOWS_FROM_PROTO = {value: window for window, value in _WINDOWS.items()}
_TIERS = protoenum.to_proto(Tier, tpb.TierName, "TIER_NAME_")
_TIERS_FROM_PROTO = protoenum.from_proto(Tier, tpb.TierName, "TIER_NAME_")


def window_from_proto(value: int) -> tuple[Scope, Span] | None:
    """The window a LimitWindow names; None for UNSPECIFIED or unknown."""
    return _WINDOWS_FROM_PROTO.get(value)


def limit_window(scope: Scope, span: Span) -> tpb.LimitWindow.ValueType:
    return tpb.LimitWindow.ValueType(_WINDOWS[(scope, span)])


def tier_name(value: Tier) -> tpb.TierName.ValueType:
    return tpb.TierName.ValueType(_TIERS[value])


def tier_from_proto(value: int) -> Tier | None:
    return _TIERS_FROM_PROTO.get(value)


def credit(value: Credit, now: datetime) -> tpb.Credit:
    key = value.key
    return tpb.Credit(
        credit_id=str(value.id),
        user_id=key.subject if key.subject != SYSTEM_SUBJECT else "",
        window=limit_window(key.scope, key.span),
        window_start_time=timestamp(value.period.start),
        window_reset_time=timestamp(value.period.end),
        amount_micros=value.amount_micros,
        reason=value.reason,
        create_time=timestamp(value.created_at),
        expire_time=timestamp(value.expires_at),
        created_by=value.created_by,
        active=value.active(now),
    )


def _optional(message: Any, name: str) -> int | None:
    return int(getattr(message, name)) if message.HasField(name) else None


def near_limits(page: NearLimitsPage) -> tpb.ListUsersNearLimitsResponse:
    return tpb.ListUsersNearLimitsResponse(
        users=[
            tpb.UserNearLimit(
                user_id=user.user_id,
                tier=tier_name(user.tier),
                window=limit_window(Scope.USER, user.span),
                share_basis_points=user.share_basis_points,
                spent_micros=user.spent_micros,
                reserved_micros=user.reserved_micros,
                effective_limit_micros=user.effective_limit_micros,
                credit_micros=user.credit_micros,
            )
            for user in page.users
        ],
        next_page_token=page.next_page_token,
    )


def exported_record(record: ExportedRecord) -> tpb.ExportedUsageRecord:
    usage = record.usage
    message = tpb.ExportedUsageRecord(
        record_id=record.id,
        request_id=usage.request_id,
        user_id=usage.user_id,
        recipe_id=usage.recipe_id,
        model=usage.model,
        size=usage.size,
        quality=image_quality_pb2.ImageQuality.ValueType(quality.to_proto(usage.quality)),
        provider=usage.provider,
        outcome=usage.outcome.value if usage.outcome else "",
        cost_micros=usage.cost_micros,
        cost_saved_micros=usage.cost_saved_micros,
        success=usage.success,
        cached=usage.cached,
        fallback_used=usage.fallback_used,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        generation_time_ms=usage.generation_time_ms,
        reservation_id=usage.reservation_id,
        error_message=usage.error_message,
        prompt=usage.prompt,
    )
    if usage.created_at is not None:
        message.create_time.CopyFrom(timestamp(usage.created_at))
    return message


def export_message(value: ExportMessage) -> tpb.ExportUsageResponse:
    return tpb.ExportUsageResponse(
        records=[exported_record(record) for record in value.records], cursor=value.cursor
    )


def proposed_tiers(
    messages: Iterable[tpb.ProposedTierLimits],
) -> list[tuple[Tier | None, LimitValues]]:
    return [
        (
            tier_from_proto(message.tier),
            LimitValues(
                daily_micros=_optional(message, "daily_micros"),
                monthly_micros=_optional(message, "monthly_micros"),
                per_generation_micros=_optional(message, "per_generation_micros"),
            ),
        )
        for message in messages
    ]


def proposed_system(request: tpb.SimulateLimitsRequest) -> LimitValues:
    return LimitValues(
        daily_micros=_optional(request, "system_daily_micros"),
        monthly_micros=_optional(request, "system_monthly_micros"),
    )


def _result(tally: Tally) -> tpb.SimulationResult:
    return tpb.SimulationResult(
        tier=tier_name(tally.tier) if tally.tier else tpb.TIER_NAME_UNSPECIFIED,
        per_generation_micros=tally.limits.per_generation_micros,
        daily_micros=tally.limits.daily_micros,
        monthly_micros=tally.limits.monthly_micros,
        requests=tally.requests,
        users=len(tally.users),
        refused_requests=tally.refused_requests,
        refused_users=len(tally.refused_users),
        actual_spend_micros=tally.actual_spend_micros,
        allowed_spend_micros=tally.allowed_spend_micros,
        avoided_spend_micros=tally.avoided_spend_micros,
        refusals=[
            tpb.RefusalCount(
                reason=reason,
                requests=tally.refusals[reason].requests,
                users=len(tally.refusals[reason].users),
                cost_micros=tally.refusals[reason].cost_micros,
            )
            for reason in REASONS
            if reason in tally.refusals
        ],
    )


def simulation(replay: Replay) -> tpb.SimulateLimitsResponse:
    return tpb.SimulateLimitsResponse(
        tiers=[_result(replay.tiers[tier]) for tier in Tier], total=_result(replay.total)
    )
