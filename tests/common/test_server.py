"""Graceful shutdown: health turns NOT_SERVING at once and a call in flight
still finishes within the grace period."""

import threading

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.server import ServerSettings, start_server

SERVICE = "test.Slow"


def test_shutdown_reports_not_serving_and_lets_in_flight_calls_finish() -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(request: bytes, context: grpc.ServicerContext) -> bytes:
        entered.set()
        release.wait(10)
        return b"done"

    def register(server: grpc.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(slow)
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, {"Work": handler})]
        )

    settings = ServerSettings("127.0.0.1:0", max_workers=4, max_concurrent_rpcs=8, grace_seconds=5)
    running = start_server(settings, register, [SERVICE])
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=SERVICE), timeout=10
    )
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING

    in_flight = channel.unary_unary(f"/{SERVICE}/Work").future(b"", timeout=10)
    assert entered.wait(5)
    stopper = threading.Thread(target=running.stop, args=(5,))
    stopper.start()

    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    release.set()
    assert in_flight.result() == b"done"
    stopper.join(10)
    assert not stopper.is_alive()
    channel.close()


def test_binding_a_taken_address_fails_loudly() -> None:
    first = start_server(ServerSettings("127.0.0.1:0", 2, 4, 1), lambda server: None, [])
    try:
        taken = f"127.0.0.1:{first.port}"
        try:
            second = start_server(ServerSettings(taken, 2, 4, 1), lambda server: None, [])
        except OSError as exc:
            assert taken in str(exc)
        else:
            second.stop(0)
            raise AssertionError("a second server bound a port already in use")
    finally:
        first.stop(0)
