"""The servicer without a network (grpcio-testing), over a real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import grpc
import grpc_testing
import pytest
from google.rpc import error_details_pb2, status_pb2
from recipeimage.budget.v1 import budget_service_pb2 as pb
from sqlalchemy.orm import sessionmaker

from services.budget.main import build_servicer
from services.budget.store.unit_of_work import BudgetStore
from services.common.db import create_db_engine, create_sessions
from services.common.paging import PageTokens
from services.common.rpc import Guard
from services.common.telemetry import Metrics
from tests.budget.conftest import T0
from tests.conftest import TEST_SECRET
from tests.support.budget_server import ManualClock, budget_settings

SERVICE = pb.DESCRIPTOR.services_by_name["BudgetService"]


@pytest.fixture
def sqlite_url(sqlite_databases, tmp_path) -> str:
    return sqlite_databases.create_copy(tmp_path)


@pytest.fixture
def sessions(sqlite_url) -> Iterator[sessionmaker]:
    engine = create_db_engine(sqlite_url)
    yield create_sessions(engine)
    engine.dispose()


class _KeepTrailingMetadata:
    """Hands the servicer a context that remembers its trailing metadata.

    grpcio-testing's ServicerContext.abort() replaces the trailing metadata set
    before it with none (a real server sends it: the integration tests read the
    same details over the network), so the test reads what the servicer set.
    """

    def __init__(self, servicer) -> None:  # type: ignore[no-untyped-def]
        self._servicer = servicer
        self.trailing_metadata: list[tuple[str, bytes | str]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        method = getattr(self._servicer, name)

        def call(request, context):  # type: ignore[no-untyped-def]
            return method(request, _Recording(context, self.trailing_metadata))

        return call


class _Recording:
    def __init__(self, context, sink: list) -> None:  # type: ignore[no-untyped-def]
        self._context = context
        self._sink = sink

    def set_trailing_metadata(self, metadata) -> None:  # type: ignore[no-untyped-def]
        self._sink.extend(metadata)
        self._context.set_trailing_metadata(metadata)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._context, name)


@pytest.fixture
def servicer(sqlite_url, sessions, authenticator) -> _KeepTrailingMetadata:
    real = build_servicer(
        budget_settings(sqlite_url, reservation_ttl_seconds=60),
        Guard(authenticator, Metrics("budget")),
        BudgetStore(sessions),
        ManualClock(T0),
        PageTokens.from_secret(TEST_SECRET),
    )
    return _KeepTrailingMetadata(real)


@pytest.fixture
def server(servicer):  # type: ignore[no-untyped-def]
    return grpc_testing.server_from_dictionary({SERVICE: servicer}, grpc_testing.strict_real_time())


def invoke(server, method: str, request, metadata=()):  # type: ignore[no-untyped-def]
    call = server.invoke_unary_unary(SERVICE.methods_by_name[method], metadata, request, None)
    return call.termination()


def status_details(trailing_metadata, code: grpc.StatusCode, message: str) -> list:  # type: ignore[no-untyped-def]
    """The google.rpc.Status in grpc-status-details-bin, checked against code and message."""
    for key, value in trailing_metadata:
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            assert (status.code, status.message) == (code.value[0], message)
            return list(status.details)
    raise AssertionError("no grpc-status-details-bin in the trailing metadata")


def test_a_call_without_a_token_is_unauthenticated(server) -> None:
    response, _, code, message = invoke(server, "GetLimits", pb.GetLimitsRequest(user_id="u1"))
    assert response is None
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization" in message


def test_reserve_through_the_servicer(server, tokens) -> None:
    response, _, code, _ = invoke(
        server,
        "ReserveBudget",
        pb.ReserveBudgetRequest(user_id="u1", amount_micros=80_000, idempotency_key="k1"),
        tokens.service(),
    )
    assert code == grpc.StatusCode.OK
    assert response.reservation.state == pb.RESERVATION_STATE_HELD
    expires = (
        response.reservation.expire_time.ToDatetime()
        - response.reservation.create_time.ToDatetime()
    )
    assert expires == timedelta(seconds=60)
    limits, _, code, _ = invoke(server, "GetLimits", pb.GetLimitsRequest(), tokens.user("u1"))
    assert code == grpc.StatusCode.OK
    assert limits.windows[0].reserved_micros == 80_000


def test_bad_fields_come_back_as_bad_request_in_trailing_metadata(server, servicer, tokens) -> None:
    response, _, code, message = invoke(
        server,
        "ReserveBudget",
        pb.ReserveBudgetRequest(user_id="u1", amount_micros=0, idempotency_key=""),
        tokens.service(),
    )
    assert response is None
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    packed = status_details(servicer.trailing_metadata, code, message)
    assert len(packed) == 1
    bad = error_details_pb2.BadRequest()
    assert packed[0].Unpack(bad)
    assert {(v.field, v.description) for v in bad.field_violations} == {
        ("amount_micros", "must be positive"),
        ("idempotency_key", "required"),
    }
