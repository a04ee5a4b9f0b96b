"""Every RPC of both services, fed requests hypothesis builds from the
contracts (NUL and control characters, huge strings, int64 extremes, unknown
enums, out-of-range timestamps, forged page tokens), under every kind of
caller: only documented codes come back, never INTERNAL or UNKNOWN, and the
ledger reconciles afterwards."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as image_pb

from tests.support.image_server import running_pair
from tests.support.proto_strategies import FUZZ_USER, messages

DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
SERVICES = (
    budget_pb.DESCRIPTOR.services_by_name["BudgetService"],
    image_pb.DESCRIPTOR.services_by_name["ImageService"],
)
EXAMPLES_PER_RPC = 50
STREAM_SECONDS = 0.3
REACHES_OK = {"GetLimits", "CheckBudget", "GetCacheStats", "ReconcileLedger", "ListAuditLog"}


def _callers(tokens) -> list[tuple[tuple[str, str], ...]]:
    return [(), tokens.user(FUZZ_USER), tokens.service(), tokens.admin()]


@pytest.mark.fuzz
def test_every_rpc_answers_bad_input_with_a_documented_code(
    database_url: str, authenticator, tokens
) -> None:
    callers = _callers(tokens)
    with running_pair(database_url, authenticator) as pair:
        channels = {"BudgetService": pair.budget.channel, "ImageService": pair.channel}
        seen: dict[str, set[str]] = {}
        for service in SERVICES:
            for method in service.methods:
                call = _caller(channels[service.name], service, method)
                seen[method.name] = _fuzz(call, method, callers)
        # The fuzz gets past validation, so it reaches the rules and the database.
        answered = {name for name, codes in seen.items() if "OK" in codes}
        assert answered >= REACHES_OK, seen
        reconciliation = pair.budget.stub.ReconcileLedger(
            budget_pb.ReconcileLedgerRequest(), metadata=tokens.admin()
        )
        assert reconciliation.consistent, reconciliation.differences


def _caller(channel, service, method):  # type: ignore[no-untyped-def]
    """A unary call; for a server stream, one that reads it for a moment: a
    stream still open at its deadline is a stream that started (OK)."""
    path = f"/{service.full_name}/{method.name}"
    serialize = lambda m: m.SerializeToString()  # noqa: E731
    if not method.server_streaming:
        return channel.unary_unary(
            path, request_serializer=serialize, response_deserializer=lambda raw: raw
        )
    stream = channel.unary_stream(
        path, request_serializer=serialize, response_deserializer=lambda raw: raw
    )

    def read_briefly(request, metadata, timeout):  # type: ignore[no-untyped-def]
        try:
            for _ in stream(request, metadata=metadata, timeout=STREAM_SECONDS):
                pass
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise

    return read_briefly


def _fuzz(call, method, callers) -> set[str]:
    codes: set[str] = set()

    @settings(
        max_examples=EXAMPLES_PER_RPC,
        deadline=None,
        database=None,
        derandomize=True,  # the same examples in every run: CI is reproducible
        suppress_health_check=list(HealthCheck),
    )
    @given(request=messages(method.input_type), caller=st.sampled_from(callers))
    def check(request, caller) -> None:
        try:
            call(request, metadata=caller, timeout=30)
            codes.add("OK")
        except grpc.RpcError as error:
            codes.add(error.code().name)
            assert error.code() in DOCUMENTED, (method.name, request, error.details())

    check()
    return codes
