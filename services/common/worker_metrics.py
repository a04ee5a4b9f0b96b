"""One /metrics for a service run as several worker processes, served by
the parent: each worker serves its own registry on a loopback port the OS
picks, and the parent, at each scrape, reads every worker's and serves them
all with a `worker` label (0..N-1) added to each sample.

Why the parent, and not prometheus_client's multiprocess mode or a port a
worker: multiprocess mode cannot run the gauges read at scrape time (the
connection pool, held money, the outboxes' backlog) that live in the
workers; and a port a worker would change the scrape configuration with the
number of processes and collide with the other service's port. This way a
service keeps one metrics port whatever its process count, and the gauges
read from the database stay what they are on replicas (aggregate with max).
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger("recipeimage.telemetry")

SCRAPE_TIMEOUT_SECONDS = 5.0


class WorkersCollector(Collector):
    """Every worker's metrics, each sample labelled with its worker index."""

    def __init__(self, worker_ports: Callable[[], Mapping[int, int]]) -> None:
        self._worker_ports = worker_ports

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for index, port in sorted(self._worker_ports().items()):
            for family in _read_worker(index, port):
                into = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    into.add_sample(
                        sample.name, {**sample.labels, "worker": str(index)}, sample.value
                    )
        yield from merged.values()


def _read_worker(index: int, port: int) -> list[Metric]:
    """A worker's metric families; none when it cannot answer (restarting)."""
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_SECONDS) as reply:
            text = reply.read().decode()
    except OSError as exc:
        facts = {"worker": index, "error": str(exc)}
        log.warning("a worker's metrics are unreachable", extra=facts)
        return []
    return list(text_string_to_metric_families(text))


def serve_workers_metrics(
    port: int, address: str, worker_ports: Callable[[], Mapping[int, int]]
) -> None:
    """Serve every worker's metrics on address:port (0: do not serve)."""
    if not port:
        return
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkersCollector(worker_ports))
    start_http_server(port, addr=address, registry=registry)
