"""Load generation and the baseline every benchmark is reported against.

The baseline is an empty unary RPC (grpc.health.v1 Check) to a gRPC server on
this machine, driven by the same number of concurrent callers. A figure printed
as a ratio of it says how much work a call does beyond gRPC's own cost, which
stays comparable across runs on a noisy machine.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.server import ServerSettings, start_server


@dataclass(frozen=True)
class Measurement:
    name: str
    calls: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        return self.percentile(0.99) * 1000


def drive(
    name: str, call: Callable[[int, int], None], *, callers: int, seconds: float
) -> Measurement:
    """Run call(caller, i) from `callers` threads for about `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(callers)]
    start = threading.Barrier(callers + 1)
    deadline = 0.0

    def worker(index: int) -> None:
        start.wait()
        mine = latencies[index]
        i = 0
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            call(index, i)
            mine.append(time.perf_counter() - began)
            i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    flat = [x for per in latencies for x in per]
    return Measurement(name, len(flat), elapsed, flat)


def empty_rpc_baseline(*, callers: int = 16, seconds: float = 5.0) -> Measurement:
    """The rate of an empty unary RPC to a server on this machine."""
    settings = ServerSettings(
        "127.0.0.1:0", max_workers=32, max_concurrent_rpcs=1024, grace_seconds=1
    )
    running = start_server(settings, lambda server: None, ["bench.Empty"])
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest()
    try:
        stub.Check(request, timeout=5)
        return drive(
            "empty unary RPC (baseline)",
            lambda _c, _i: stub.Check(request, timeout=5),
            callers=callers,
            seconds=seconds,
        )
    finally:
        channel.close()
        running.stop(0)


def report(measurement: Measurement, baseline: Measurement) -> str:
    ratio = measurement.rate / baseline.rate
    return (
        f"{measurement.name:<48} {measurement.rate:>9.0f}/s  "
        f"p50 {measurement.p50_ms:>7.2f} ms  p99 {measurement.p99_ms:>7.2f} ms  "
        f"= {ratio:.3f} x baseline rate"
    )
