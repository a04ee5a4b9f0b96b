"""BudgetService through its generated stub: every call with a deadline and a
service token, every failure as a domain error.

Fail closed: UNAVAILABLE or DEADLINE_EXCEEDED from any call becomes
Unavailable, and GenerateImage fails without generating anything. Commit and
release settle money the provider already took or that is still held, so they
are retried a few times (both are idempotent) before giving up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import budget_service_pb2_grpc as pb_grpc
from recipeimage.common.v1 import image_quality_pb2

from services.common import protoenum, quality
from services.common.auth import Authenticator, Role
from services.common.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.common.status import from_rpc_error
from services.image.domain.accounting import (
    AttemptState,
    Outcome,
    Reservation,
    ReservationState,
    Usage,
    UsageKind,
)
from services.image.domain.quote import BudgetView, Refusal, WindowView
from services.image.domain.settlement import RecordAnswer

log = logging.getLogger("recipeimage.image.budget")

SERVICE = "BudgetService"
SUBJECT = "image-service"
UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

Response = TypeVar("Response")

_OUTCOMES = protoenum.to_proto(Outcome, pb.UsageOutcome, "USAGE_OUTCOME_")
_KINDS = protoenum.to_proto(UsageKind, pb.UsageKind, "USAGE_KIND_")
_STATES = protoenum.from_proto(ReservationState, pb.ReservationState, "RESERVATION_STATE_")
_ATTEMPTS = protoenum.from_proto(AttemptState, pb.AttemptState, "ATTEMPT_STATE_")


class ServiceToken:
    """This service's own bearer token, minted from the shared secret and
    minted again well before it expires."""

    def __init__(
        self, authenticator: Authenticator, subject: str = SUBJECT, ttl_seconds: int = 3600
    ) -> None:
        self._authenticator = authenticator
        self._subject = subject
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0

    def metadata(self) -> tuple[tuple[str, str], ...]:
        with self._lock:
            now = time.time()
            if now >= self._renew_at:
                self._token = self._authenticator.mint(Role.SERVICE, self._subject, self._ttl)
                # Renew with a quarter of the lifetime left: clock skew and slow calls fit.
                self._renew_at = now + self._ttl * 3 / 4
            return (("authorization", f"Bearer {self._token}"),)


class BudgetClient:
    def __init__(
        self,
        channel: grpc.Channel,
        token: ServiceToken,
        *,
        deadline_seconds: float,
        settle_attempts: int = 3,
        settle_backoff_seconds: float = 0.25,
    ) -> None:
        self._stub = pb_grpc.BudgetServiceStub(channel)
        self._token = token
        self._deadline = deadline_seconds
        self._settle_attempts = max(1, settle_attempts)
        self._settle_backoff = settle_backoff_seconds

    def admit(self, user_id: str, request_id: str = "") -> AttemptState | None:
        response = self._call(
            self._stub.Admit,
            pb.AdmitRequest(user_id=user_id, request_id=request_id),
            "nothing was looked up, generated or charged",
        )
        return _ATTEMPTS.get(response.attempt)

    def reserve(self, user_id: str, amount_micros: int, idempotency_key: str) -> Reservation:
        response = self._call(
            self._stub.ReserveBudget,
            pb.ReserveBudgetRequest(
                user_id=user_id, amount_micros=amount_micros, idempotency_key=idempotency_key
            ),
            "nothing was generated or charged",
        )
        reservation = response.reservation
        return Reservation(
            reservation_id=reservation.reservation_id,
            state=_STATES.get(reservation.state, ReservationState.HELD),
            amount_micros=reservation.amount_micros,
            replayed=response.replayed,
        )

    def check(self, user_id: str, amount_micros: int, *, include_admission: bool) -> BudgetView:
        response = self._call(
            self._stub.CheckBudget,
            pb.CheckBudgetRequest(
                user_id=user_id, amount_micros=amount_micros, include_admission=include_admission
            ),
            "nothing was looked up, generated or charged",
        )
        return BudgetView(
            per_generation_micros=response.per_generation_limit_micros,
            windows=tuple(_window_view(window) for window in response.windows),
            money_reason=response.reason,
            admit_refusal=_refusal(response, "admit_refusal"),
            reserve_refusal=_refusal(response, "reserve_refusal"),
            generation_refusal=_refusal(response, "generation_refusal"),
        )

    def commit(self, reservation_id: str, actual_cost_micros: int, usage: Usage) -> None:
        self._settle(
            self._stub.CommitReservation,
            pb.CommitReservationRequest(
                reservation_id=reservation_id,
                actual_cost_micros=actual_cost_micros,
                usage=usage_record(usage, reservation_id),
            ),
            reservation_id,
            "the generated image's cost could not be recorded",
        )

    def release(self, reservation_id: str, usage: Usage) -> None:
        self._settle(
            self._stub.ReleaseReservation,
            pb.ReleaseReservationRequest(
                reservation_id=reservation_id, usage=usage_record(usage, reservation_id)
            ),
            reservation_id,
            "the held budget is returned when the reservation expires",
        )

    def record_usage(self, usage: Usage) -> bool:
        response = self._call(
            self._stub.RecordUsage,
            pb.RecordUsageRequest(usage=usage_record(usage)),
            "nothing was served or charged",
        )
        return bool(response.duplicate)

    def record_usage_batch(self, usages: list[Usage]) -> list[RecordAnswer]:
        response = self._call(
            self._stub.RecordUsageBatch,
            pb.RecordUsageBatchRequest(usages=[usage_record(usage) for usage in usages]),
            "the records stay in the outbox",
        )
        if len(response.results) != len(usages):
            raise Unavailable(f"{SERVICE} answered a batch of {len(usages)} with the wrong count")
        return [_record_answer(result) for result in response.results]

    def _settle(
        self,
        method: Callable[..., object],
        request: Message,
        reservation_id: str,
        consequence: str,
    ) -> None:
        for attempt in range(1, self._settle_attempts + 1):
            try:
                self._call(method, request, consequence)
                return
            except Unavailable:
                if attempt == self._settle_attempts:
                    raise
                log.warning(
                    "budget settlement failed; retrying",
                    extra={"attempt": attempt, "reservation_id": reservation_id},
                )
                time.sleep(self._settle_backoff * attempt)

    def _call(
        self, method: Callable[..., Response], request: Message, consequence: str
    ) -> Response:
        try:
            return method(request, timeout=self._deadline, metadata=self._token.metadata())
        except grpc.RpcError as error:
            raise _domain_error(error, consequence) from None


def _domain_error(error: grpc.RpcError, consequence: str) -> DomainError:
    # What a channel raises is also a grpc.Call, which has the status code.
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    if code in UNREACHABLE:
        return Unavailable(
            f"{SERVICE} cannot be reached ({code.name}); {consequence}",
            reason="BUDGET_UNAVAILABLE",
        )
    return from_rpc_error(error, SERVICE)


def _record_answer(result: pb.RecordUsageResult) -> RecordAnswer:
    if result.recorded:
        return RecordAnswer(recorded=True, duplicate=result.duplicate)
    code = grpc.StatusCode.UNKNOWN
    for status in grpc.StatusCode:
        if status.value[0] == result.code:
            code = status
    message = result.message or code.name
    error: DomainError
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        error = InvalidArgument.field("usage", message)
    elif code == grpc.StatusCode.FAILED_PRECONDITION:
        error = FailedPrecondition(message, result.reason or "FAILED_PRECONDITION", {})
    elif code == grpc.StatusCode.NOT_FOUND:
        error = NotFound(message)
    elif code == grpc.StatusCode.PERMISSION_DENIED:
        error = PermissionDenied(message)
    else:  # anything else may pass: the record is tried again
        error = Unavailable(f"{SERVICE} did not record it: {message}")
    return RecordAnswer(recorded=False, error=error)


def _window_view(window: pb.Window) -> WindowView:
    return WindowView(
        window=pb.WindowKind.Name(window.kind).removeprefix("WINDOW_KIND_").lower(),
        limit_micros=window.limit_micros,
        spent_micros=window.spent_micros,
        reserved_micros=window.reserved_micros,
        remaining_micros=window.remaining_micros,
        reset_at=window.reset_time.ToDatetime(tzinfo=UTC),
        limit_source=window.limit_source,
    )


def _refusal(response: pb.CheckBudgetResponse, name: str) -> Refusal | None:
    if not response.HasField(name):  # type: ignore[arg-type]  # one of three field names
        return None
    refusal = getattr(response, name)
    return Refusal(
        code=refusal.code,
        reason=refusal.reason,
        message=refusal.message,
        metadata=dict(refusal.metadata),
        retry_after=refusal.retry_delay.ToTimedelta() if refusal.HasField("retry_delay") else None,
    )


def usage_record(usage: Usage, reservation_id: str = "") -> pb.UsageRecord:
    return pb.UsageRecord(
        request_id=usage.request_id,
        user_id=usage.user_id,
        recipe_id=usage.recipe_id,
        prompt=usage.prompt,
        prompt_length=len(usage.prompt),
        size=usage.size,
        quality=image_quality_pb2.ImageQuality.ValueType(quality.to_proto(usage.quality)),
        model=usage.model,
        provider=usage.provider,
        cost_micros=usage.cost_micros,
        success=usage.success,
        error_message=usage.error_message,
        fallback_used=usage.fallback_used,
        generation_time_ms=usage.generation_time_ms,
        cached=usage.cached,
        cache_hit=usage.cache_hit,
        outcome=pb.UsageOutcome.ValueType(_OUTCOMES[usage.outcome]),
        cost_saved_micros=usage.cost_saved_micros,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        reservation_id=reservation_id,
        dish_key=usage.dish_key,
        similar_allowed=usage.similar_allowed,
        custom_prompt=usage.custom_prompt,
        image_id=usage.image_id,
        kind=pb.UsageKind.ValueType(_KINDS[usage.kind]),
    )
