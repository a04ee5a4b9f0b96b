"""The RPC edge: authentication, roles, error mapping and metrics, over a real
server on loopback."""

import logging
from concurrent import futures

import grpc
import pytest
from sqlalchemy import create_engine

from services.common.auth import TRUSTED, Authenticator, Principal
from services.common.errors import NotFound
from services.common.rpc import Guard, rpc
from services.common.status import rich_details
from services.common.telemetry import Metrics
from tests.conftest import TEST_SECRET


class Probe:
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    @rpc(TRUSTED)
    def WhoAmI(self, request: bytes, context, principal: Principal) -> bytes:
        return f"{principal.role}:{principal.subject}".encode()

    @rpc(TRUSTED)
    def Missing(self, request: bytes, context, principal: Principal) -> bytes:
        raise NotFound("no such thing")

    @rpc(TRUSTED)
    def NoDatabase(self, request: bytes, context, principal: Principal) -> bytes:
        # A real driver error: nothing listens on port 1.
        engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
        with engine.connect():
            return b""

    @rpc(TRUSTED)
    def Broken(self, request: bytes, context, principal: Principal) -> bytes:
        raise RuntimeError("database password is hunter2")


@pytest.fixture
def probe():
    metrics = Metrics("probe")
    servicer = Probe(Guard(Authenticator(TEST_SECRET), metrics))
    server = grpc.server(futures.ThreadPoolExecutor(2))
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name))
        for name in ("WhoAmI", "Missing", "Broken", "NoDatabase")
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Probe", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def call(name: str, metadata=()):
        return channel.unary_unary(f"/test.Probe/{name}")(b"", metadata=metadata, timeout=5)

    yield call, metrics
    channel.close()
    server.stop(None)


def code_of(call, *args) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args)
    return caught.value.code()


def test_trusted_caller_gets_through(probe, tokens) -> None:
    call, _ = probe
    assert call("WhoAmI", tokens.service("backend")) == b"service:backend"


def test_no_token_is_unauthenticated(probe) -> None:
    call, _ = probe
    assert code_of(call, "WhoAmI") is grpc.StatusCode.UNAUTHENTICATED


def test_wrong_role_is_permission_denied(probe, tokens) -> None:
    call, _ = probe
    assert code_of(call, "WhoAmI", tokens.user("u1")) is grpc.StatusCode.PERMISSION_DENIED


def test_domain_error_maps_to_its_code(probe, tokens) -> None:
    call, _ = probe
    assert code_of(call, "Missing", tokens.admin()) is grpc.StatusCode.NOT_FOUND


def test_unknown_error_is_internal_logged_and_not_leaked(probe, tokens, caplog) -> None:
    call, _ = probe
    with (
        caplog.at_level(logging.ERROR, logger="recipeimage.rpc"),
        pytest.raises(grpc.RpcError) as caught,
    ):
        call("Broken", tokens.admin())
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "hunter2" not in caught.value.details()
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])


def test_calls_are_counted_by_method_and_code(probe, tokens) -> None:
    call, metrics = probe
    call("WhoAmI", tokens.admin())
    code_of(call, "WhoAmI")
    sample = metrics.registry.get_sample_value
    assert (
        sample("recipeimage_rpc_total", {"service": "probe", "method": "WhoAmI", "code": "OK"}) == 1
    )
    labels = {"service": "probe", "method": "WhoAmI", "code": "UNAUTHENTICATED"}
    assert sample("recipeimage_rpc_total", labels) == 1


def test_a_database_that_cannot_be_reached_is_unavailable_not_internal(probe, tokens) -> None:
    call, metrics = probe
    with pytest.raises(grpc.RpcError) as caught:
        call("NoDatabase", tokens.service())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info = next(d for d in rich_details(caught.value) if d.DESCRIPTOR.name == "ErrorInfo")
    assert info.reason == "DATABASE_UNAVAILABLE"
