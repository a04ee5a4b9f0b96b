"""Domain errors cross the wire as status codes with google.rpc details and
come back as the same domain errors on the calling side."""

from datetime import timedelta

import grpc
import pytest
from google.rpc import error_details_pb2

from services.common.errors import (
    ContentRefused,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    Unavailable,
)
from services.common.status import from_rpc_error, internal_status, rich_details, to_status

METHOD = "/test.Errors/Raise"


@pytest.fixture
def raise_over_wire():
    """A real server on loopback whose one method aborts with to_status(error)."""
    holder: dict[str, DomainError] = {}

    def handler(request: bytes, context: grpc.ServicerContext) -> bytes:
        status = to_status(holder["error"])
        context.abort_with_status(status)

    server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Errors", {"Raise": grpc.unary_unary_rpc_method_handler(handler)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(METHOD)

    def invoke(error: DomainError) -> grpc.RpcError:
        holder["error"] = error
        with pytest.raises(grpc.RpcError) as caught:
            call(b"", timeout=5)
        return caught.value

    yield invoke
    channel.close()
    server.stop(None)


def test_quota_exceeded_carries_error_info_quota_failure_and_retry_info(raise_over_wire) -> None:
    error = QuotaExceeded(
        "daily limit reached",
        reason="DAILY_LIMIT_EXCEEDED",
        subject="user:42",
        retry_after=timedelta(hours=3, seconds=0.2),
        metadata={"limit_micros": "500000"},
    )
    received = raise_over_wire(error)
    assert received.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = {type(d): d for d in rich_details(received)}
    info = details[error_details_pb2.ErrorInfo]
    assert info.reason == "DAILY_LIMIT_EXCEEDED"
    assert info.metadata["limit_micros"] == "500000"
    assert details[error_details_pb2.QuotaFailure].violations[0].subject == "user:42"
    # Rounded up: retrying a fraction of a second early would be refused again.
    assert details[error_details_pb2.RetryInfo].retry_delay.seconds == 3 * 3600 + 1

    again = from_rpc_error(received, "budget")
    assert isinstance(again, QuotaExceeded)
    assert again.info.reason == "DAILY_LIMIT_EXCEEDED"
    assert again.subject == "user:42"
    assert again.retry_after == timedelta(seconds=3 * 3600 + 1)


def test_invalid_argument_names_each_field(raise_over_wire) -> None:
    error = InvalidArgument([FieldViolation("size", "not offered"), FieldViolation("quality", "x")])
    received = raise_over_wire(error)
    assert received.code() is grpc.StatusCode.INVALID_ARGUMENT
    (bad_request,) = rich_details(received)
    assert [v.field for v in bad_request.field_violations] == ["size", "quality"]
    again = from_rpc_error(received, "budget")
    assert isinstance(again, InvalidArgument)
    assert [v.field for v in again.violations] == ["size", "quality"]


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (NotFound("no such image"), grpc.StatusCode.NOT_FOUND, None),
        (
            FailedPrecondition("gone", "MODEL_RETIRED"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "MODEL_RETIRED",
        ),
        (ContentRefused("refused"), grpc.StatusCode.INVALID_ARGUMENT, "CONTENT_POLICY_VIOLATION"),
        (Unavailable("down"), grpc.StatusCode.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE"),
    ],
)
def test_simple_errors_map_to_their_codes(raise_over_wire, error, code, reason) -> None:
    received = raise_over_wire(error)
    assert received.code() is code
    assert received.details() == error.message
    reasons = [
        d.reason for d in rich_details(received) if isinstance(d, error_details_pb2.ErrorInfo)
    ]
    assert reasons == ([reason] if reason else [])


def test_internal_status_hides_the_exception_text() -> None:
    status = internal_status()
    assert status.code is grpc.StatusCode.INTERNAL
    assert "internal error" in status.details
