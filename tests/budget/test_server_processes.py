"""One BudgetService run as several server processes on one port
(RECIPEIMAGE_SERVER_PROCESSES, services/common/processes.py), real processes
on both databases: connections reach every worker, a limit that allows K
reservations grants exactly K however the calls spread over the workers
(with no "database is locked" on SQLite), SIGTERM drains every worker, a
killed worker is replaced, and a worker that cannot start stops the service.

Which worker served is read from the service's one metrics endpoint, which
the parent serves with every worker's samples labelled `worker`.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import budget_service_pb2_grpc

from tests.budget.test_processes import window_sums, zone_far_from_midnight
from tests.conftest import TEST_SECRET
from tests.support.budget_server import BudgetProcess, budget_processes

WORKERS = 2
CONNECTIONS = 12
CALLERS = 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_env(metrics_port: int, **extra: str) -> dict[str, str]:
    return {
        "RECIPEIMAGE_SERVER_PROCESSES": str(WORKERS),
        "RECIPEIMAGE_BUDGET_METRICS_PORT": str(metrics_port),
        **extra,
    }


def wait_for(condition, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def serving_pids(service: BudgetProcess) -> set[int]:
    return {int(entry["pid"]) for entry in service.messages("serving")}


def wait_for_workers(service: BudgetProcess, count: int = WORKERS) -> set[int]:
    """The pids of the workers that logged "serving", once there are count."""

    def enough() -> set[int] | None:
        pids = serving_pids(service)
        return pids if len(pids) >= count else None

    return wait_for(enough)


def own_connections(port: int, count: int) -> list[grpc.Channel]:
    """Channels that each open their own TCP connection (grpc shares one
    between identical channels of a process otherwise)."""
    return [
        grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(count)
    ]


def calls_served(metrics_port: int, method: str) -> dict[str, float]:
    """worker -> calls of method it counted, from the service's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    served: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "recipeimage_rpc_total" and sample.labels["method"] == method:
                worker = sample.labels["worker"]
                served[worker] = served.get(worker, 0) + sample.value
    return served


def test_every_worker_serves_and_limits_stay_exact(database_url, tokens) -> None:
    amount = 30_000
    allows = 7
    metrics_port = free_port()
    env = worker_env(
        metrics_port,
        RECIPEIMAGE_BUDGET_TIME_ZONE=zone_far_from_midnight(),
        # Room for 7 and a bit, never 8.
        RECIPEIMAGE_TIER_FREE=f"daily={allows * amount + amount - 1},"
        f"monthly=1000000000,per_generation={amount}",
    )
    with budget_processes(1, database_url, TEST_SECRET, env) as (service,):
        assert len(wait_for_workers(service)) == WORKERS
        channels = own_connections(service.port, CONNECTIONS)
        stubs = [budget_service_pb2_grpc.BudgetServiceStub(channel) for channel in channels]
        gate = threading.Barrier(CALLERS)

        def reserve(number: int):  # type: ignore[no-untyped-def]
            gate.wait()
            try:
                return stubs[number % len(stubs)].ReserveBudget(
                    pb.ReserveBudgetRequest(
                        user_id="u1", amount_micros=amount, idempotency_key=f"k{number}"
                    ),
                    metadata=tokens.service(),
                    timeout=30,
                )
            except grpc.RpcError as error:
                return (error.code(), error.details())

        try:
            with ThreadPoolExecutor(max_workers=CALLERS) as pool:
                results = list(pool.map(reserve, range(CALLERS)))
        finally:
            for channel in channels:
                channel.close()
        granted = [r for r in results if isinstance(r, pb.ReserveBudgetResponse)]
        refused = Counter(r[0] for r in results if not isinstance(r, pb.ReserveBudgetResponse))
        # Nothing but the limit refused a call: no "database is locked", no INTERNAL.
        assert len(granted) == allows, results
        assert refused == {grpc.StatusCode.RESOURCE_EXHAUSTED: CALLERS - allows}, results
        assert window_sums(database_url)[("user", "u1", "day")] == (0, allows * amount)
        served = calls_served(metrics_port, "ReserveBudget")
        assert sum(served.values()) == CALLERS
        assert set(served) == {str(index) for index in range(WORKERS)}, served
        assert all(count > 0 for count in served.values()), served
        assert not [e for e in list(service.logs) if "locked" in str(e.get("error", ""))]


def test_sigterm_drains_every_worker(tmp_path) -> None:
    database_url = f"sqlite:///{tmp_path}/budget.db"
    with budget_processes(1, database_url, TEST_SECRET, worker_env(0)) as (service,):
        pids = wait_for_workers(service)
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=30) == 0
        stopped = {int(entry["pid"]) for entry in service.messages("stopped")}
        assert pids <= stopped
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def test_a_killed_worker_is_replaced(tmp_path, tokens) -> None:
    database_url = f"sqlite:///{tmp_path}/budget.db"
    with budget_processes(1, database_url, TEST_SECRET, worker_env(0)) as (service,):
        victim, *_ = sorted(wait_for_workers(service))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: service.messages("worker died; restarting it"))
        pids = wait_for_workers(service, WORKERS + 1)
        assert len(pids - {victim}) == WORKERS
        # Fresh connections reach live workers only, and every call is served.
        channels = own_connections(service.port, CONNECTIONS)
        try:
            for channel in channels:
                budget_service_pb2_grpc.BudgetServiceStub(channel).GetLimits(
                    pb.GetLimitsRequest(user_id="u1"), metadata=tokens.service(), timeout=10
                )
        finally:
            for channel in channels:
                channel.close()
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(timeout=30) == 0


def test_a_worker_that_cannot_start_stops_the_service(tmp_path) -> None:
    database_url = f"sqlite:///{tmp_path}/budget.db"
    # A price table that is not there: the workers refuse it when they build
    # the service (the parent checks only the secret and the database).
    env = worker_env(0, RECIPEIMAGE_PRICE_TABLE=str(tmp_path / "missing.json"))
    with (
        pytest.raises(RuntimeError, match="worker could not start; stopping") as raised,
        budget_processes(1, database_url, TEST_SECRET, env),
    ):
        pass
    assert "RECIPEIMAGE_PRICE_TABLE" in str(raised.value)
