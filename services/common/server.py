"""A gRPC server as both services run it: a thread pool with a cap on
concurrent RPCs, grpc.health.v1, reflection, graceful shutdown, explicit
message size caps and keepalive, and TLS or mutual TLS when configured."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.transport import ServerTls, WireLimits

log = logging.getLogger("recipeimage.server")


@dataclass(frozen=True)
class ServerSettings:
    address: str
    max_workers: int
    max_concurrent_rpcs: int
    grace_seconds: float
    limits: WireLimits = WireLimits()
    # None: plaintext (the `make run` default).
    tls: ServerTls | None = None
    # True only in a worker of several (services/common/processes.py): the
    # workers share the port their parent reserved, and the kernel spreads
    # connections over them. False: nothing else can bind the port and
    # split the traffic unnoticed.
    reuse_port: bool = False


class RunningServer:
    def __init__(self, server: grpc.Server, health_servicer: health.HealthServicer, port: int):
        self.server = server
        self.health = health_servicer
        self.port = port

    def stop(self, grace_seconds: float) -> None:
        """Health goes NOT_SERVING at once; in-flight calls get grace_seconds to finish."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_seconds).wait()


def start_server(
    settings: ServerSettings,
    register: Callable[[grpc.Server], None],
    service_names: Sequence[str],
) -> RunningServer:
    """Build, bind and start a server; `register` adds the service's servicers."""
    options = [
        *settings.limits.server_options(),
        ("grpc.so_reuseport", 1 if settings.reuse_port else 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="rpc"),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        options=options,
    )
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *service_names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        if settings.tls is None:
            port = server.add_insecure_port(settings.address)
        else:
            port = server.add_secure_port(settings.address, settings.tls.credentials())
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {settings.address}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {settings.address}")
    server.start()
    log.info(
        "serving",
        extra={
            "services": list(service_names),
            "address": settings.address,
            "port": port,
            "tls": _tls_mode(settings.tls),
        },
    )
    return RunningServer(server, health_servicer, port)


def _tls_mode(tls: ServerTls | None) -> str:
    if tls is None:
        return "off"
    return "mutual" if tls.client_ca_file is not None else "on"


def catch_stop_signals(grace_seconds: float) -> threading.Event:
    """An event set by SIGTERM or SIGINT from now on. Made before the app is
    built: its server serves before main reaches serve_until_signalled, and a
    signal in between must not kill the process by the default action."""
    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info(
            "shutting down",
            extra={"signal": signal.Signals(signum).name, "grace_seconds": grace_seconds},
        )
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stopping


def serve_until_signalled(
    running: RunningServer,
    grace_seconds: float,
    on_stop: Callable[[], None] | None = None,
    stopping: threading.Event | None = None,
) -> None:
    """Block until SIGTERM or SIGINT (caught since catch_stop_signals made
    stopping, or from now on), then shut down gracefully."""
    if stopping is None:
        stopping = catch_stop_signals(grace_seconds)
    stopping.wait()
    running.stop(grace_seconds)
    if on_stop is not None:
        on_stop()
    log.info("stopped")
