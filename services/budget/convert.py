"""Protobuf messages <-> the budget service's plain values (domain/). No rules here;
enums map by name (services.common.protoenum)."""

from __future__ import annotations

from typing import cast
from zoneinfo import ZoneInfo

from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.common.v1 import image_quality_pb2

from services.budget import convert_admission as admission
from services.budget import convert_tools as tools
from services.budget.domain.alert_rules import WindowWarning
from services.budget.domain.audit import AuditAction, AuditEntry, AuditSnapshot
from services.budget.domain.limits import (
    LimitValues,
    SystemLimitsView,
    Tier,
    UserSettings,
)
from services.budget.domain.reconciliation import Reconciliation
from services.budget.domain.reservations import (
    BudgetCheck,
    LimitsView,
    Reservation,
    ReservationState,
    WindowState,
)
from services.budget.domain.usage import (
    Outcome,
    Recorded,
    StatsPeriod,
    Usage,
    UsageKind,
    UsagePage,
    UsageStats,
)
from services.budget.domain.windows import Scope, Span, local_midnight, window_name
from services.common import protoenum, quality
from services.common.errors import DomainError
from services.common.status import to_status
from services.common.timestamps import to_proto as timestamp

# protoenum maps to plain ints; the casts give them the proto enums' value types.
_TIERS = cast(
    dict[Tier, pb.UserTier.ValueType], protoenum.to_proto(Tier, pb.UserTier, "USER_TIER_")
)
_TIERS_FROM_PROTO = protoenum.from_proto(Tier, pb.UserTier, "USER_TIER_")
_STATES = cast(
    dict[ReservationState, pb.ReservationState.ValueType],
    protoenum.to_proto(ReservationState, pb.ReservationState, "RESERVATION_STATE_"),
)
_OUTCOMES = cast(
    dict[Outcome, pb.UsageOutcome.ValueType],
    protoenum.to_proto(Outcome, pb.UsageOutcome, "USAGE_OUTCOME_"),
)
_OUTCOMES_FROM_PROTO = protoenum.from_proto(Outcome, pb.UsageOutcome, "USAGE_OUTCOME_")
_KINDS = cast(
    dict[UsageKind, pb.UsageKind.ValueType],
    protoenum.to_proto(UsageKind, pb.UsageKind, "USAGE_KIND_"),
)
_KINDS_FROM_PROTO = protoenum.from_proto(UsageKind, pb.UsageKind, "USAGE_KIND_")
_PERIODS = cast(
    dict[StatsPeriod, pb.StatsPeriod.ValueType],
    protoenum.to_proto(StatsPeriod, pb.StatsPeriod, "STATS_PERIOD_"),
)
_PERIODS_FROM_PROTO = protoenum.from_proto(StatsPeriod, pb.StatsPeriod, "STATS_PERIOD_")
_AUDIT_ACTIONS = cast(
    dict[AuditAction, pb.AuditAction.ValueType],
    protoenum.to_proto(AuditAction, pb.AuditAction, "AUDIT_ACTION_"),
)
# WINDOW_KIND_USER_DAILY ... by the window's name (user_daily ...).
_WINDOW_KINDS = {
    (scope, span): pb.WindowKind.Value("WINDOW_KIND_" + window_name(scope, span).upper())
    for scope in Scope
    for span in Span
}


def _quality(name: str) -> image_quality_pb2.ImageQuality.ValueType:
    return image_quality_pb2.ImageQuality.ValueType(quality.to_proto(name))


def tier(value: Tier | None) -> pb.UserTier.ValueType:
    return _TIERS[value] if value is not None else pb.USER_TIER_UNSPECIFIED


def tier_from_proto(value: int) -> Tier | None:
    return _TIERS_FROM_PROTO.get(value)


def limit_values(value: LimitValues | None) -> pb.LimitValues:
    message = pb.LimitValues()
    if value is None:
        return message
    for name, number in value.as_dict().items():
        setattr(message, name, number)
    return message


def limit_values_from_proto(message: pb.LimitValues) -> LimitValues:
    """Unset fields stay None (proto3 optional)."""
    return LimitValues(
        daily_micros=message.daily_micros if message.HasField("daily_micros") else None,
        monthly_micros=message.monthly_micros if message.HasField("monthly_micros") else None,
        per_generation_micros=(
            message.per_generation_micros if message.HasField("per_generation_micros") else None
        ),
    )


def window(state: WindowState, warning: WindowWarning | None = None) -> pb.Window:
    message = pb.Window(
        kind=_WINDOW_KINDS[(state.key.scope, state.key.span)],
        limit_micros=state.limit_micros,
        spent_micros=state.spent_micros,
        reserved_micros=state.reserved_micros,
        remaining_micros=state.remaining_micros,
        start_time=timestamp(state.period.start),
        reset_time=timestamp(state.period.end),
        limit_source=state.source,
        overrun_micros=state.overrun_micros,
        credit_micros=state.credit_micros,
        effective_limit_micros=state.effective_limit_micros,
    )
    if warning is not None:
        message.threshold_percent = warning.threshold_percent
        message.warning = warning.message
        if warning.exhausted_at is not None:
            message.projected_exhaustion_time.CopyFrom(timestamp(warning.exhausted_at))
    return message


def check_budget_response(check: BudgetCheck) -> pb.CheckBudgetResponse:
    response = pb.CheckBudgetResponse(
        allowed=check.allowed,
        reason=check.reason,
        windows=[window(w) for w in check.windows],
    )
    if check.per_generation is not None:
        response.per_generation_limit_micros = check.per_generation.micros
        response.per_generation_limit_source = check.per_generation.source
    verdict = check.admission
    if verdict is not None:
        for name, error in (
            ("admit_refusal", verdict.admit),
            ("reserve_refusal", verdict.reserve),
            ("generation_refusal", verdict.generation),
        ):
            converted = admission.refusal(error)
            if converted is not None:
                getattr(response, name).CopyFrom(converted)
    return response


def limits(view: LimitsView) -> pb.GetLimitsResponse:
    return pb.GetLimitsResponse(
        user_id=view.user_id,
        tier=tier(view.tier),
        per_generation_limit_micros=view.per_generation.micros,
        per_generation_limit_source=view.per_generation.source,
        windows=[window(w, view.warnings.get(w.key)) for w in view.windows],
        overrides=limit_values(view.overrides),
        spend_cap=limit_values(view.cap),
        rate_rules=[admission.rate_rule(state) for state in view.rate_rules],
        concurrency=admission.concurrency(view.concurrency),
        block=admission.block(view.block),
        rate_overrides=admission.rate_limit_values(view.rate_overrides),
        credits=[tools.credit(c, view.as_of or c.created_at) for c in view.credits],
    )


def user_settings(value: UserSettings) -> pb.UserLimitSettings:
    return pb.UserLimitSettings(
        user_id=value.user_id,
        tier=tier(value.tier),
        overrides=limit_values(value.overrides),
        spend_cap=limit_values(value.cap),
    )


def system_limits(value: SystemLimitsView) -> pb.SetSystemLimitsResponse:
    return pb.SetSystemLimitsResponse(
        daily_limit_micros=value.daily.micros,
        daily_limit_source=value.daily.source,
        monthly_limit_micros=value.monthly.micros,
        monthly_limit_source=value.monthly.source,
    )


def _snapshot(value: AuditSnapshot) -> pb.AuditSnapshot:
    message = pb.AuditSnapshot(tier=tier(value.tier))
    for field, values in (
        ("overrides", value.overrides),
        ("spend_cap", value.cap),
        ("system_limits", value.system),
    ):
        if values is not None:
            getattr(message, field).CopyFrom(limit_values(values))
    audited = admission.block(value.block)
    if audited is not None:
        message.block.CopyFrom(audited)
    if value.rate_overrides is not None:
        message.rate_overrides.CopyFrom(admission.rate_limit_values(value.rate_overrides))
    if value.credit is not None:
        message.credit.CopyFrom(tools.credit(value.credit, value.credit.created_at))
    return message


def audit_entry(value: AuditEntry) -> pb.AuditEntry:
    return pb.AuditEntry(
        entry_id=str(value.id),
        create_time=timestamp(value.created_at),
        actor=value.actor,
        actor_role=value.actor_role,
        action=_AUDIT_ACTIONS[value.action],
        target_user_id=value.target_user_id,
        before=_snapshot(value.before),
        after=_snapshot(value.after),
    )


def reconciliation(value: Reconciliation, zone: ZoneInfo) -> pb.ReconcileLedgerResponse:
    differences = []
    for difference in value.differences:
        message = pb.LedgerDifference(
            user_id=difference.user_id,
            field=difference.field,
            counter_micros=difference.counter_micros,
            ledger_micros=difference.ledger_micros,
            reservation_id=difference.reservation_id,
            description=difference.description,
        )
        if difference.scope is not None and difference.span is not None:
            message.window_kind = _WINDOW_KINDS[(difference.scope, difference.span)]
        if difference.start_date is not None:
            message.window_start_time.CopyFrom(
                timestamp(local_midnight(difference.start_date, zone))
            )
        differences.append(message)
    return pb.ReconcileLedgerResponse(
        consistent=value.consistent,
        windows_checked=value.windows_checked,
        reservations_checked=value.reservations_checked,
        differences=differences,
        truncated=value.truncated,
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
        quality=quality.FROM_PROTO.get(message.quality, ""),
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
        dish_key=message.dish_key,
        similar_allowed=message.similar_allowed,
        custom_prompt=message.custom_prompt,
        image_id=message.image_id,
        kind=_KINDS_FROM_PROTO.get(message.kind, UsageKind.IMAGE),
    )


def usage(value: Usage) -> pb.UsageRecord:
    message = pb.UsageRecord(
        request_id=value.request_id,
        user_id=value.user_id,
        recipe_id=value.recipe_id,
        prompt=value.prompt,
        prompt_length=value.prompt_length,
        size=value.size,
        quality=_quality(value.quality),
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
        dish_key=value.dish_key,
        similar_allowed=value.similar_allowed,
        custom_prompt=value.custom_prompt,
        image_id=value.image_id,
        kind=_KINDS[value.kind],
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
        time_zone=value.time_zone,
        fallback_generations=value.fallback_generations,
        breakdown=[
            pb.UsageBreakdown(
                model=row.model,
                size=row.size,
                quality=_quality(row.quality),
                generations=row.generations,
                successful_generations=row.successful,
                cost_micros=row.cost_micros,
                cache_hits=row.cache_hits,
                cost_saved_micros=row.cost_saved_micros,
            )
            for row in value.breakdown
        ],
        outcomes=[
            pb.OutcomeCount(
                outcome=_OUTCOMES[row.outcome],
                count=row.count,
                cost_micros=row.cost_micros,
                cost_saved_micros=row.cost_saved_micros,
            )
            for row in value.outcomes
        ],
    )
    if value.last_generation_at is not None:
        message.last_generation_time.CopyFrom(timestamp(value.last_generation_at))
    return message


def usage_page(value: UsagePage) -> pb.ListUsageResponse:
    return pb.ListUsageResponse(
        usage_records=[usage(record) for record in value.records],
        next_page_token=value.next_page_token,
    )


def usage_of(request: pb.CommitReservationRequest | pb.ReleaseReservationRequest) -> Usage:
    """The usage record a settling request carries (none: an empty one)."""
    return usage_from_proto(request.usage) if request.HasField("usage") else Usage()


def system_limits_from_proto(message: pb.SetSystemLimitsRequest) -> tuple[int | None, int | None]:
    """The daily and monthly limits asked for: None when unset (proto3 optional)."""
    return (
        message.daily_limit_micros if message.HasField("daily_limit_micros") else None,
        message.monthly_limit_micros if message.HasField("monthly_limit_micros") else None,
    )


def record_usage_result(
    record: pb.UsageRecord, result: Recorded | DomainError
) -> pb.RecordUsageResult:
    """One record's answer in RecordUsageBatch: recorded (or a duplicate), or
    the status RecordUsage would have failed with."""
    if not isinstance(result, DomainError):
        return pb.RecordUsageResult(
            user_id=result.usage.user_id,
            request_id=record.request_id,
            recorded=True,
            duplicate=result.duplicate,
        )
    info = getattr(result, "info", None)
    return pb.RecordUsageResult(
        user_id=record.user_id,
        request_id=record.request_id,
        recorded=False,
        code=to_status(result).code.value[0],
        reason=info.reason if info is not None else "",
        message=result.message,
    )
