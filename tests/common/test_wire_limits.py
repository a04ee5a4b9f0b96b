"""Explicit message size caps and keepalive on the servers and the channel."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import grpc
import pytest

from services.budget.settings import BudgetSettings
from services.common.config import ConfigError
from services.common.server import RunningServer, ServerSettings, start_server
from services.common.transport import WireLimits, open_channel, wire_limits_from_env
from services.image.settings import ImageSettings

SERVICE = "test.Echo"


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    # The request names how many bytes to answer with.
    return b"x" * int(request.decode())


def _register(server: grpc.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(_echo)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler})]
    )


@pytest.fixture
def small_server() -> Iterator[RunningServer]:
    limits = WireLimits(max_receive_message_bytes=1024, max_send_message_bytes=2048)
    settings = ServerSettings("127.0.0.1:0", 2, 4, 1, limits=limits)
    running = start_server(settings, _register, [SERVICE])
    yield running
    running.stop(0)


def echo(server: RunningServer, request: bytes) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        return channel.unary_unary(f"/{SERVICE}/Echo")(request, timeout=10)  # type: ignore[no-any-return]


def test_calls_within_the_caps_pass(small_server: RunningServer) -> None:
    assert echo(small_server, b"2000") == b"x" * 2000


def test_a_request_over_the_receive_cap_is_refused(small_server: RunningServer) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        echo(small_server, b"1" + b"0" * 1500)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_response_over_the_send_cap_is_refused(small_server: RunningServer) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        echo(small_server, b"3000")
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_channel_caps_what_it_receives(small_server: RunningServer) -> None:
    limits = WireLimits(max_receive_message_bytes=1024)
    with open_channel(f"127.0.0.1:{small_server.port}", None, limits) as channel:
        call = channel.unary_unary(f"/{SERVICE}/Echo")
        assert call(b"1000", timeout=10) == b"x" * 1000
        with pytest.raises(grpc.RpcError) as raised:
            call(b"2000", timeout=10)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_defaults_are_explicit_and_the_same_for_both_services() -> None:
    limits = WireLimits()
    assert BudgetSettings.from_env({}).wire == limits
    assert ImageSettings.from_env({}).wire == limits
    options = dict(limits.server_options())
    assert options["grpc.max_receive_message_length"] == 32 * 1024 * 1024
    assert options["grpc.max_send_message_length"] == 32 * 1024 * 1024
    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.keepalive_timeout_ms"] == 20_000
    assert options["grpc.http2.ping_timeout_ms"] == 20_000
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 30_000
    # A client pinging at the keepalive time is never told too_many_pings.
    assert limits.keepalive_time_seconds >= limits.min_client_ping_interval_seconds


def test_wire_settings_are_read_from_the_environment() -> None:
    limits = wire_limits_from_env(
        {
            "RECIPEIMAGE_GRPC_MAX_RECEIVE_MESSAGE_BYTES": "4194304",
            "RECIPEIMAGE_GRPC_MAX_SEND_MESSAGE_BYTES": "8388608",
            "RECIPEIMAGE_GRPC_KEEPALIVE_TIME_SECONDS": "120",
            "RECIPEIMAGE_GRPC_KEEPALIVE_TIMEOUT_SECONDS": "10",
            "RECIPEIMAGE_GRPC_MIN_CLIENT_PING_INTERVAL_SECONDS": "60",
        }
    )
    assert limits == WireLimits(4194304, 8388608, 120.0, 10.0, 60.0)
    channel = dict(limits.channel_options())
    assert channel["grpc.max_receive_message_length"] == 4194304
    assert channel["grpc.keepalive_time_ms"] == 120_000
    assert channel["grpc.keepalive_permit_without_calls"] == 1


@pytest.mark.parametrize(
    "env",
    [
        {"RECIPEIMAGE_GRPC_MAX_RECEIVE_MESSAGE_BYTES": "10"},
        {"RECIPEIMAGE_GRPC_MAX_SEND_MESSAGE_BYTES": "lots"},
        {"RECIPEIMAGE_GRPC_KEEPALIVE_TIME_SECONDS": "0"},
        {"RECIPEIMAGE_GRPC_KEEPALIVE_TIME_SECONDS": "10"},  # below the ping interval
    ],
)
def test_unusable_wire_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        wire_limits_from_env(env)


# ---- keepalive, seen on the wire -------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING = 4, 6


def _frame(kind: int, flags: int = 0, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + (0).to_bytes(4, "big") + payload


def _silent_peer(port: int, seconds: float) -> tuple[list[int], bool]:
    """An HTTP/2 client that acknowledges SETTINGS and never answers a PING;
    the frame types the server sent within `seconds`, and whether it closed."""
    kinds: list[int] = []
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as peer:
        peer.sendall(PREFACE + _frame(SETTINGS))
        deadline = time.monotonic() + seconds
        buffer = b""
        while time.monotonic() < deadline:
            peer.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = peer.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                return kinds, True
            buffer += chunk
            while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                length, kind, flags = int.from_bytes(buffer[:3], "big"), buffer[3], buffer[4]
                kinds.append(kind)
                if kind == SETTINGS and not flags & 1:
                    peer.sendall(_frame(SETTINGS, flags=1))
                buffer = buffer[9 + length :]
    return kinds, False


def _bare_server(limits: WireLimits) -> RunningServer:
    return start_server(ServerSettings("127.0.0.1:0", 2, 4, 1, limits=limits), _register, [])


def test_the_server_pings_an_idle_peer_and_drops_one_that_never_answers() -> None:
    limits = WireLimits(
        keepalive_time_seconds=0.5,
        keepalive_timeout_seconds=0.5,
        min_client_ping_interval_seconds=0.5,
    )
    server = _bare_server(limits)
    try:
        kinds, closed = _silent_peer(server.port, seconds=10)
    finally:
        server.stop(0)
    assert PING in kinds
    assert closed


def test_without_a_short_keepalive_an_idle_peer_is_left_alone() -> None:
    server = _bare_server(WireLimits())  # the defaults: first ping after 60 s
    try:
        kinds, closed = _silent_peer(server.port, seconds=2)
    finally:
        server.stop(0)
    assert PING not in kinds
    assert not closed
