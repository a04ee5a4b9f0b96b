"""Prometheus metrics for one server, in a registry of its own.

Each composition root builds one Metrics and (when a port is configured)
serves it over HTTP; tests build their own without serving.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server


class Metrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.rpc_total = Counter(
            "recipeimage_rpc_total",
            "RPCs handled, by method and status code.",
            ["service", "method", "code"],
            registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            "recipeimage_rpc_seconds",
            "RPC handling time in seconds.",
            ["service", "method"],
            registry=self.registry,
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
                60,
            ),
        )
        self.spend_micros = Counter(
            "recipeimage_spend_micros_total",
            "Micro-dollars committed to the provider.",
            ["service"],
            registry=self.registry,
        )
        self.cost_saved_micros = Counter(
            "recipeimage_cost_saved_micros_total",
            "Micro-dollars saved by serving a cached image.",
            ["service"],
            registry=self.registry,
        )

    def counter_by(self, name: str, documentation: str, label: str) -> Callable[[str], None]:
        """A counter of this service by one label: call it with the label's value."""
        counter = Counter(name, documentation, ["service", label], registry=self.registry)
        return lambda value: counter.labels(self.service, value).inc()

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpc_total.labels(self.service, method, code).inc()
        self.rpc_seconds.labels(self.service, method).observe(seconds)

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        """Expose /metrics on port (0 means: do not serve)."""
        if port:
            start_http_server(port, addr=address, registry=self.registry)
