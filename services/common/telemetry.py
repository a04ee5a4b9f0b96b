"""Prometheus metrics for one server, in a registry of its own.

Each composition root builds one Metrics and (when a port is configured)
serves it over HTTP; tests build their own without serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("recipeimage.telemetry")

SECONDS_BUCKETS = (
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
)


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
            buckets=SECONDS_BUCKETS,
        )
        self._rpc_children: dict[
            tuple[str, str], tuple[Callable[[], None], Callable[[float], None]]
        ] = {}
        self.refusals = Counter(
            "recipeimage_refusals_total",
            "Calls refused with a reason (ErrorInfo), by method and reason.",
            ["service", "method", "reason"],
            registry=self.registry,
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

    def counter_by_labels(self, name: str, documentation: str, *labels: str) -> Callable[..., None]:
        """A counter of this service by several labels: call it with their
        values, in order."""
        counter = Counter(name, documentation, ["service", *labels], registry=self.registry)
        return lambda *values: counter.labels(self.service, *values).inc()

    def counter(self, name: str, documentation: str) -> Callable[[float], None]:
        """A counter of this service: call it with the amount to add."""
        counter = Counter(name, documentation, ["service"], registry=self.registry)
        child = counter.labels(self.service)
        return child.inc

    def seconds_histogram(self, name: str, documentation: str) -> Callable[[float], None]:
        """A latency histogram of this service: call it with the seconds taken."""
        histogram = Histogram(
            name, documentation, ["service"], registry=self.registry, buckets=SECONDS_BUCKETS
        )
        return histogram.labels(self.service).observe

    def gauges_on_scrape(
        self, gauges: Mapping[str, str], read: Callable[[], Mapping[str, float]]
    ) -> None:
        """Gauges (name -> documentation) whose values read() computes at each
        scrape, all at once (one query). A failing read leaves them out."""
        self.registry.register(_ScrapeGauges(self.service, gauges, read))

    def watch_pool(self, pool: object) -> None:
        """Gauges of a database connection pool: connections checked out, pool size."""

        def read() -> dict[str, float]:
            # QueuePool has both figures; SQLite's other pool classes may not.
            checked_out = getattr(pool, "checkedout", None)
            size = getattr(pool, "size", None)
            if not (callable(checked_out) and callable(size)):
                return {}
            return {
                "recipeimage_db_pool_checked_out": checked_out(),
                "recipeimage_db_pool_size": size(),
            }

        self.gauges_on_scrape(
            {
                "recipeimage_db_pool_checked_out": "Database connections in use now.",
                "recipeimage_db_pool_size": "Database connections the pool keeps open "
                "(as many again may overflow).",
            },
            read,
        )

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        count, observe = self._rpc_children.get((method, code)) or self._rpc_children_of(
            method, code
        )
        count()
        observe(seconds)

    def _rpc_children_of(
        self, method: str, code: str
    ) -> tuple[Callable[[], None], Callable[[float], None]]:
        """The counter and histogram children of one method and code, kept:
        labels() takes a lock and builds a key on every call."""
        children = (
            self.rpc_total.labels(self.service, method, code).inc,
            self.rpc_seconds.labels(self.service, method).observe,
        )
        self._rpc_children[(method, code)] = children  # a racing twin stores the same children
        return children

    def observe_refusal(self, method: str, reason: str) -> None:
        self.refusals.labels(self.service, method, reason).inc()

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        """Expose /metrics on port (0 means: do not serve)."""
        if port:
            start_http_server(port, addr=address, registry=self.registry)

    def serve_on_loopback(self) -> int:
        """Expose /metrics on a loopback port the OS picks, for the parent of
        several worker processes to gather (worker_metrics.py); the port."""
        server, _thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        return int(server.server_port)


class _ScrapeGauges(Collector):
    def __init__(
        self,
        service: str,
        gauges: Mapping[str, str],
        read: Callable[[], Mapping[str, float]],
    ) -> None:
        self._service = service
        self._gauges: Sequence[tuple[str, str]] = tuple(gauges.items())
        self._read = read

    def describe(self) -> Iterator[Metric]:
        for name, documentation in self._gauges:
            yield GaugeMetricFamily(name, documentation, labels=["service"])

    def collect(self) -> Iterator[Metric]:
        try:
            values = self._read()
        except Exception:
            log.warning("reading gauges failed", exc_info=True)
            values = {}
        for name, documentation in self._gauges:
            family = GaugeMetricFamily(name, documentation, labels=["service"])
            if name in values:
                family.add_metric([self._service], float(values[name]))
            yield family
