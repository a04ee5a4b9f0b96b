"""Replicas as production runs them: BudgetService and ImageService processes
(the real entry points) on one database, ImageService reaching BudgetService
through gRPC's round_robin over every BudgetService address, and the test's
clients spreading their calls over the replicas the same way.

    with fake_openai() as fake, running_replicas(url, tmp_path, fake) as replicas:
        replicas.image.GenerateImage(...)        # round_robin over both ImageServices
        replicas.budget.ReserveBudget(...)       # round_robin over both BudgetServices
        replicas.budgets[0].kill()               # SIGKILL one process
        replicas.restart_budget(0)               # again, on the same port
        replicas.rpc_count(replicas.budgets[1], "ReserveBudget")

Each process serves its Prometheus metrics on a port of its own, so a test
can tell which replica served what. Admission's rules are disabled; `budget_env`
and `image_env` add or override settings (RECIPEIMAGE_ variables).
"""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from recipeimage.budget.v1 import budget_service_pb2_grpc
from recipeimage.image.v1 import image_service_pb2_grpc

from services.common.transport import WireLimits, open_channel
from tests.conftest import TEST_SECRET
from tests.support.budget_server import budget_process_env
from tests.support.fake_openai import FakeOpenAI
from tests.support.service_processes import (
    ServiceProcess,
    clean_env,
    spawn_service,
    start_service,
    wait_until_serving,
)


def free_port() -> int:
    """A port free now (the OS picks it); a metrics endpoint binds it next."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def round_robin_target(processes: list[ServiceProcess]) -> str:
    """One gRPC target naming every process: ipv4:127.0.0.1:p1,127.0.0.1:p2."""
    return "ipv4:" + ",".join(process.target for process in processes)


def round_robin_channel(processes: list[ServiceProcess]) -> grpc.Channel:
    """A channel as ImageService opens its own to BudgetService: round_robin
    over every address."""
    return open_channel(round_robin_target(processes), None, WireLimits())


def warm_up(channel: grpc.Channel) -> None:
    """Wait until the channel is connected, then a little longer with calls
    going: round_robin sends everything to the first address ready until the
    others are ready too, and a test of spreading must not start before."""
    health = health_pb2_grpc.HealthStub(channel)
    for _ in range(10):
        health.Check(health_pb2.HealthCheckRequest(), timeout=10, wait_for_ready=True)
        time.sleep(0.05)


def image_process_env(
    database_url: str,
    budget_target: str,
    store_dir: Path,
    fake: FakeOpenAI,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """An ImageService process on database_url, reaching BudgetService at
    budget_target and OpenAI at the fake, on an OS-picked port, with no
    background purge or settlement unless env asks; then env."""
    return {
        **clean_env(),
        "RECIPEIMAGE_JWT_SECRET": TEST_SECRET,
        "RECIPEIMAGE_IMAGE_ADDRESS": "127.0.0.1:0",
        "RECIPEIMAGE_IMAGE_DATABASE_URL": database_url,
        "RECIPEIMAGE_IMAGE_METRICS_PORT": "0",
        "RECIPEIMAGE_IMAGE_DB_POOL_SIZE": "10",
        "RECIPEIMAGE_IMAGE_STORE_DIR": str(store_dir),
        "RECIPEIMAGE_BUDGET_TARGET": budget_target,
        "RECIPEIMAGE_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-test",
        "RECIPEIMAGE_OPENAI_BASE_URL": fake.base_url,
        "RECIPEIMAGE_OPENAI_MAX_RETRIES": "0",
        "RECIPEIMAGE_SINGLE_FLIGHT_WAIT_SECONDS": "10",
        "RECIPEIMAGE_CACHE_PURGE_INTERVAL_SECONDS": "0",
        "RECIPEIMAGE_SETTLEMENT_INTERVAL_SECONDS": "0",
        "RECIPEIMAGE_SHUTDOWN_GRACE_SECONDS": "5",
        "RECIPEIMAGE_LOG_LEVEL": "INFO",
        # One server process per replica unless env asks for more.
        "RECIPEIMAGE_SERVER_PROCESSES": "1",
        **dict(env or {}),
    }


def with_metrics(env: Mapping[str, str], service: str) -> dict[str, str]:
    return {**env, f"RECIPEIMAGE_{service.upper()}_METRICS_PORT": str(free_port())}


def metrics_port(process: ServiceProcess) -> int:
    return int(process.env[f"RECIPEIMAGE_{process.service.upper()}_METRICS_PORT"])


@dataclass
class Replicas:
    database_url: str
    store_dir: Path
    budgets: list[ServiceProcess]
    images: list[ServiceProcess]
    # round_robin over every BudgetService, and over every ImageService.
    budget: budget_service_pb2_grpc.BudgetServiceStub
    image: image_service_pb2_grpc.ImageServiceStub
    _stack: ExitStack = field(repr=False)

    @property
    def budget_target(self) -> str:
        return round_robin_target(self.budgets)

    def image_stub(self, index: int) -> image_service_pb2_grpc.ImageServiceStub:
        """A stub reaching one ImageService process only."""
        channel = grpc.insecure_channel(self.images[index].target)
        self._stack.callback(channel.close)
        return image_service_pb2_grpc.ImageServiceStub(channel)

    def budget_stub(self, index: int) -> budget_service_pb2_grpc.BudgetServiceStub:
        """A stub reaching one BudgetService process only."""
        channel = grpc.insecure_channel(self.budgets[index].target)
        self._stack.callback(channel.close)
        return budget_service_pb2_grpc.BudgetServiceStub(channel)

    def restart_budget(self, index: int) -> ServiceProcess:
        """Start BudgetService number index again, on its port and settings
        (its old process must be gone)."""
        old = self.budgets[index]
        assert old.process.poll() is not None, "stop the old process first"
        env = {**old.env, "RECIPEIMAGE_BUDGET_ADDRESS": old.target}
        restarted = start_service("budget", env)
        self._stack.callback(restarted.stop)
        self.budgets[index] = restarted
        return restarted

    def rpc_count(self, process: ServiceProcess, method: str) -> int:
        """Calls of method the process answered (any code), from its /metrics."""
        url = f"http://127.0.0.1:{metrics_port(process)}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return int(
            sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "recipeimage_rpc_total" and sample.labels["method"] == method
            )
        )


def start_all(service: str, envs: list[dict[str, str]], stack: ExitStack) -> list[ServiceProcess]:
    """Start the processes together, then wait for each; stopped by the stack."""
    started = []
    for env in envs:
        process = spawn_service(service, env)
        stack.callback(process.stop)
        started.append(process)
    return [wait_until_serving(process) for process in started]


@contextmanager
def running_replicas(
    database_url: str,
    store_dir: Path,
    fake: FakeOpenAI,
    *,
    budgets: int = 2,
    images: int = 2,
    budget_env: Mapping[str, str] | None = None,
    image_env: Mapping[str, str] | None = None,
) -> Iterator[Replicas]:
    """`budgets` BudgetService and `images` ImageService processes on one
    database (migrated already: PostgreSQL services do not migrate themselves)."""
    with ExitStack() as stack:
        budget_base = budget_process_env(database_url, TEST_SECRET, budget_env)
        started_budgets = start_all(
            "budget", [with_metrics(budget_base, "budget") for _ in range(budgets)], stack
        )
        target = round_robin_target(started_budgets)
        image_base = image_process_env(database_url, target, store_dir, fake, image_env)
        started_images = start_all(
            "image", [with_metrics(image_base, "image") for _ in range(images)], stack
        )
        budget_channel = round_robin_channel(started_budgets)
        stack.callback(budget_channel.close)
        # With no ImageService, a channel that is never used: calls fail UNAVAILABLE.
        image_channel = (
            round_robin_channel(started_images)
            if started_images
            else grpc.insecure_channel("127.0.0.1:1")
        )
        stack.callback(image_channel.close)
        warm_up(budget_channel)
        if started_images:
            warm_up(image_channel)
        yield Replicas(
            database_url,
            store_dir,
            started_budgets,
            started_images,
            budget_service_pb2_grpc.BudgetServiceStub(budget_channel),
            image_service_pb2_grpc.ImageServiceStub(image_channel),
            stack,
        )
