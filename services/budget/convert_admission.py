"""Protobuf messages <-> the plain values of admission control: rate rules,
the concurrency cap, blocks, rate overrides. No rules here."""

from __future__ import annotations

from typing import cast

from recipeimage.budget.v1 import admission_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.domain.admission import CapState, RateState, RuleName
from services.budget.domain.blocks import Block, BlockPage, BlockSource
from services.budget.domain.limits import RateLimitValues
from services.budget.domain.usage import AttemptState
from services.common import protoenum
from services.common.errors import DeniedWithReason, DomainError, QuotaExceeded
from services.common.status import retry_delay
from services.common.timestamps import to_proto as timestamp

_RULE_KINDS = {
    RuleName.USER_REQUESTS: apb.RATE_RULE_KIND_USER_REQUESTS,
    RuleName.USER_GENERATIONS: apb.RATE_RULE_KIND_USER_GENERATIONS,
    RuleName.SYSTEM_REQUESTS: apb.RATE_RULE_KIND_SYSTEM_REQUESTS,
    RuleName.SYSTEM_GENERATIONS: apb.RATE_RULE_KIND_SYSTEM_GENERATIONS,
}
_BLOCK_SOURCES = cast(
    dict[BlockSource, apb.BlockSource.ValueType],
    protoenum.to_proto(BlockSource, apb.BlockSource, "BLOCK_SOURCE_"),
)


def rate_rule(state: RateState) -> apb.RateRule:
    rule = state.rule
    message = apb.RateRule(
        kind=_RULE_KINDS[rule.name],
        limit=rule.limit,
        period_seconds=rule.period_seconds,
        burst=rule.burst,
        remaining=state.remaining,
        full_time=timestamp(state.full_time),
        source=rule.source,
        shadow=rule.shadow,
    )
    if state.next_time is not None:
        message.next_time.CopyFrom(timestamp(state.next_time))
    return message


def concurrency(state: CapState | None) -> apb.ConcurrencyCap | None:
    if state is None:
        return None
    return apb.ConcurrencyCap(
        limit=state.cap.limit, in_flight=state.in_flight, source=state.cap.source
    )


def block(value: Block | None) -> apb.Block | None:
    if value is None:
        return None
    message = apb.Block(
        user_id=value.user_id,
        reason=value.reason,
        source=_BLOCK_SOURCES[value.source],
        create_time=timestamp(value.created_at),
        created_by=value.created_by,
        level=value.level,
    )
    if value.expires_at is not None:
        message.expire_time.CopyFrom(timestamp(value.expires_at))
    return message


def block_page(value: BlockPage) -> pb.ListBlocksResponse:
    return pb.ListBlocksResponse(
        blocks=[message for b in value.blocks if (message := block(b)) is not None],
        next_page_token=value.next_page_token,
    )


def rate_limit_values(value: RateLimitValues | None) -> apb.RateLimitValues:
    message = apb.RateLimitValues()
    for name, number in (value.as_dict() if value is not None else {}).items():
        setattr(message, name, number)
    return message


def rate_limit_values_from_proto(message: apb.RateLimitValues) -> RateLimitValues:
    """Unset fields stay None (proto3 optional)."""

    def value(name: str) -> int | None:
        # The stubs type HasField's argument as the literal field names only.
        return int(getattr(message, name)) if message.HasField(name) else None  # type: ignore[arg-type]

    return RateLimitValues(
        requests_per_minute=value("requests_per_minute"),
        request_burst=value("request_burst"),
        generations_per_hour=value("generations_per_hour"),
        max_concurrent_generations=value("max_concurrent_generations"),
    )


def refusal(error: DomainError | None) -> apb.Refusal | None:
    """A refusal as a value, with the status code, ErrorInfo and RetryInfo
    delay the RPC would answer it with (services.common.status.to_status)."""
    if error is None:
        return None
    message = apb.Refusal(message=error.message)
    if isinstance(error, QuotaExceeded):
        message.code, message.subject = "RESOURCE_EXHAUSTED", error.subject
    elif isinstance(error, DeniedWithReason):
        message.code = "PERMISSION_DENIED"
    else:  # pragma: no cover - admission refuses with nothing else
        raise TypeError(f"not a refusal: {type(error).__name__}")
    message.reason = error.info.reason
    message.metadata.update(error.info.metadata)
    delay = retry_delay(error)
    if delay is not None:
        message.retry_delay.CopyFrom(delay)
    return message


_ATTEMPT_STATES = protoenum.to_proto(AttemptState, pb.AttemptState, "ATTEMPT_STATE_")


def attempt_state(state: AttemptState | None) -> pb.AttemptState.ValueType:
    if state is None:
        return pb.ATTEMPT_STATE_UNSPECIFIED
    return pb.AttemptState.ValueType(_ATTEMPT_STATES[state])
