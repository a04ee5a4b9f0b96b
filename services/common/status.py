"""Domain errors <-> gRPC status with google.rpc details (AIP-193).

to_status is the one place a service's errors become status codes;
from_rpc_error turns another service's rich status back into a domain error
so it can be passed on with its details intact.
"""

from __future__ import annotations

import math
from datetime import timedelta

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common.errors import (
    ContentRefused,
    DeadlineExceeded,
    DeniedWithReason,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    Unauthenticated,
    Unavailable,
)

ERROR_DOMAIN = "recipeimage"

_SIMPLE_CODES: dict[type[DomainError], int] = {
    Unauthenticated: code_pb2.UNAUTHENTICATED,
    PermissionDenied: code_pb2.PERMISSION_DENIED,
    NotFound: code_pb2.NOT_FOUND,
    FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    ContentRefused: code_pb2.INVALID_ARGUMENT,
    Unavailable: code_pb2.UNAVAILABLE,
    DeadlineExceeded: code_pb2.DEADLINE_EXCEEDED,
}


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _error_info(reason: str, metadata: dict[str, str]) -> any_pb2.Any:
    return _pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata))


def retry_delay(error: QuotaExceeded | DeniedWithReason) -> duration_pb2.Duration | None:
    """The RetryInfo delay a refusal is answered with: a rate rule's exact
    admission time, a quota's rounded up to whole seconds, a block's end."""
    if isinstance(error, DeniedWithReason):
        if error.retry_after is None:
            return None
        exact = error.retry_after
    elif isinstance(error, RateLimited):  # exactly when it would be admitted
        exact = error.retry_after
    else:
        return duration_pb2.Duration(seconds=max(1, math.ceil(error.retry_after.total_seconds())))
    delay = duration_pb2.Duration()
    delay.FromTimedelta(max(exact, timedelta(microseconds=1)))
    return delay


def to_status(error: DomainError) -> grpc.Status:
    details: list[any_pb2.Any] = []
    if isinstance(error, InvalidArgument):
        code = code_pb2.INVALID_ARGUMENT
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    elif isinstance(error, QuotaExceeded):
        code = code_pb2.RESOURCE_EXHAUSTED
        delay = retry_delay(error)
        details += [
            _error_info(error.info.reason, error.info.metadata),
            _pack(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(
                            subject=error.subject, description=error.message
                        )
                    ]
                )
            ),
            _pack(error_details_pb2.RetryInfo(retry_delay=delay)),
        ]
    elif isinstance(error, DeniedWithReason):
        code = code_pb2.PERMISSION_DENIED
        details.append(_error_info(error.info.reason, error.info.metadata))
        denied_delay = retry_delay(error)
        if denied_delay is not None:
            details.append(_pack(error_details_pb2.RetryInfo(retry_delay=denied_delay)))
    else:
        code = next(c for kind, c in _SIMPLE_CODES.items() if isinstance(error, kind))
        info = getattr(error, "info", None)
        if info is not None:
            details.append(_error_info(info.reason, info.metadata))
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=error.message, details=details)
    )


def internal_status() -> grpc.Status:
    # Never the exception text: it may hold secrets or internals.
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message="internal error; see the server log")
    )


def rich_details(error: grpc.RpcError) -> list[Message]:
    """The unpacked google.rpc detail messages of a call's error, if any."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # grpc-stubs: RpcError lacks Call
    if status is None:
        return []
    unpacked: list[Message] = []
    for detail in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.QuotaFailure,
            error_details_pb2.RetryInfo,
            error_details_pb2.BadRequest,
        ):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                unpacked.append(message)
    return unpacked


def from_rpc_error(error: grpc.RpcError, service: str) -> DomainError:
    """Another service's status as a domain error, keeping reason and details."""
    code = error.code()
    text = error.details() or ""
    details = rich_details(error)
    info = next((d for d in details if isinstance(d, error_details_pb2.ErrorInfo)), None)
    reason = info.reason if info else ""
    metadata = dict(info.metadata) if info else {}
    retry = next((d for d in details if isinstance(d, error_details_pb2.RetryInfo)), None)
    retry_after = retry.retry_delay.ToTimedelta() if retry else None
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        quota = next((d for d in details if isinstance(d, error_details_pb2.QuotaFailure)), None)
        # A sub-second RetryInfo is a rate rule's exact admission time: keep it exact.
        exact = retry_after is not None and retry_after.microseconds != 0
        kind = RateLimited if exact else QuotaExceeded
        return kind(
            text,
            reason=reason or "RESOURCE_EXHAUSTED",
            subject=quota.violations[0].subject if quota and quota.violations else service,
            retry_after=retry_after or timedelta(seconds=1),
            metadata=metadata,
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        bad = next((d for d in details if isinstance(d, error_details_pb2.BadRequest)), None)
        if bad and bad.field_violations:
            return InvalidArgument(
                [FieldViolation(v.field, v.description) for v in bad.field_violations]
            )
        return InvalidArgument.field("request", text)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        if reason:  # e.g. USER_BLOCKED: pass its details on intact
            return DeniedWithReason(text, reason, metadata, retry_after)
        return PermissionDenied(text)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        # Our own credentials were refused: a configuration fault, not the caller's.
        return Unavailable(f"{service} refused this service's credentials: {text}")
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(text)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(text, reason or "FAILED_PRECONDITION", metadata)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"{service} did not answer in time", reason="DEPENDENCY_TIMEOUT")
    return Unavailable(f"{service} is unavailable: {text or code.name}")
