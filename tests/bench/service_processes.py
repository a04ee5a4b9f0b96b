"""The service bench's servers: a real BudgetService and a real ImageService,
each its own process started from its entry point (as production runs them),
configured only through the RECIPEIMAGE_ variables listed here, so every
setting the figures depend on is explicit and printed with them.

    with bench_database("postgresql") as database:
        with service_processes(database, fake_openai_url, server_processes=1) as servers:
            servers.budget_target, servers.image_target, servers.budget.pid ...

PostgreSQL: a fresh database on RECIPEIMAGE_TEST_POSTGRES_URL's server,
created and migrated as the tests do and dropped at the end; both services
use it (as the tests do). SQLite: the embedded default, a file per service in
a temporary directory, each migrated by its service at start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.budget_server import NO_ADMISSION_ENV
from tests.support.databases import PostgresDatabases, _conninfo, postgres_admin_url

ROOT = Path(__file__).resolve().parents[2]
# Limits no bench call reaches: the figures measure the path that holds and spends.
UNLIMITED_TIER = "daily=1000000000000000,monthly=1000000000000000,per_generation=1000000000"


@dataclass(frozen=True)
class BenchDatabase:
    backend: str  # "postgresql" or "sqlite"
    budget_url: str
    image_url: str
    # PostgreSQL: the database's name and a conninfo to the server's admin database.
    name: str = ""
    admin_conninfo: str = ""


@contextmanager
def bench_database(backend: str) -> Iterator[BenchDatabase]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="recipeimage-bench-") as directory:
            yield BenchDatabase(
                "sqlite", f"sqlite:///{directory}/budget.db", f"sqlite:///{directory}/image.db"
            )
        return
    databases = PostgresDatabases(postgres_admin_url())
    databases.check_reachable()
    # Created and migrated as the tests' template is, under a name that says what it is.
    databases.template = f"ri_bench_{databases.run_id}"
    try:
        databases.create_template()
        url = databases.url(databases.template)
        yield BenchDatabase(
            "postgresql", url, url, databases.template, _conninfo(databases.admin_url)
        )
    finally:
        databases.drop_all()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def common_env(secret: str, server_processes: int) -> dict[str, str]:
    """What both services are given: the secret, the process count (a setting
    the servers may not read yet), logs, no metrics endpoint."""
    return {
        "RECIPEIMAGE_JWT_SECRET": secret,
        "RECIPEIMAGE_SERVER_PROCESSES": str(server_processes),
        "RECIPEIMAGE_SHUTDOWN_GRACE_SECONDS": "1",
        "RECIPEIMAGE_LOG_LEVEL": "WARNING",
    }


def budget_env(database: BenchDatabase, port: int) -> dict[str, str]:
    return {
        "RECIPEIMAGE_BUDGET_ADDRESS": f"127.0.0.1:{port}",
        "RECIPEIMAGE_BUDGET_DATABASE_URL": database.budget_url,
        "RECIPEIMAGE_BUDGET_METRICS_PORT": "0",
        "RECIPEIMAGE_BUDGET_MAX_WORKERS": "32",
        "RECIPEIMAGE_BUDGET_DB_POOL_SIZE": "20",
        "RECIPEIMAGE_TIER_FREE": UNLIMITED_TIER,
        "RECIPEIMAGE_TIER_PREMIUM": UNLIMITED_TIER,
        "RECIPEIMAGE_TIER_PRO": UNLIMITED_TIER,
        "RECIPEIMAGE_SYSTEM_DAILY_LIMIT_MICROS": "1000000000000000",
        "RECIPEIMAGE_SYSTEM_MONTHLY_LIMIT_MICROS": "1000000000000000",
        # The reaper and the alert evaluator keep their production defaults: they
        # run in production too. Admission's rules and abuse triggers are off, so
        # nothing is refused for its pace.
        **NO_ADMISSION_ENV,
    }


def image_env(
    database: BenchDatabase, port: int, budget_port: int, store_dir: Path, openai_url: str
) -> dict[str, str]:
    return {
        "RECIPEIMAGE_IMAGE_ADDRESS": f"127.0.0.1:{port}",
        "RECIPEIMAGE_IMAGE_DATABASE_URL": database.image_url,
        "RECIPEIMAGE_IMAGE_METRICS_PORT": "0",
        "RECIPEIMAGE_IMAGE_MAX_WORKERS": "64",
        "RECIPEIMAGE_IMAGE_DB_POOL_SIZE": "20",
        "RECIPEIMAGE_IMAGE_STORE_DIR": str(store_dir),
        "RECIPEIMAGE_BUDGET_TARGET": f"127.0.0.1:{budget_port}",
        # Misses (only to fill the cache before measuring) go to the fake OpenAI.
        "RECIPEIMAGE_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-bench-not-a-real-key",
        "RECIPEIMAGE_OPENAI_BASE_URL": openai_url,
        "RECIPEIMAGE_OPENAI_MAX_RETRIES": "0",
    }


@dataclass(frozen=True)
class ServerProcesses:
    budget: subprocess.Popen[bytes]
    image: subprocess.Popen[bytes]
    budget_target: str
    image_target: str
    # The variables each was started with (beyond the inherited non-RECIPEIMAGE_ ones).
    budget_settings: dict[str, str]
    image_settings: dict[str, str]


def _base_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("RECIPEIMAGE_") and key != "OPENAI_API_KEY"
    }


def _start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=_base_environment() | env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_serving(process: subprocess.Popen[bytes], target: str, log: Path) -> None:
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 90
        while True:
            try:
                health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                return
            except grpc.RpcError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{target} did not start: {log.read_text(errors='replace')[-3000:]}"
                    ) from None
                time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def service_processes(
    database: BenchDatabase, openai_url: str, *, secret: str, server_processes: int
) -> Iterator[ServerProcesses]:
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ri-bench-srv-")))
        budget_port, image_port = free_port(), free_port()
        common = common_env(secret, server_processes)
        budget_settings = common | budget_env(database, budget_port)
        image_settings = common | image_env(
            database, image_port, budget_port, scratch / "images", openai_url
        )
        # Started together (ImageService connects to BudgetService lazily), so a
        # loaded machine's slow imports are paid once.
        budget = _start("services.budget.main", budget_settings, scratch / "budget.log")
        stack.callback(_stop, budget)
        image = _start("services.image.main", image_settings, scratch / "image.log")
        stack.callback(_stop, image)
        budget_target = f"127.0.0.1:{budget_port}"
        image_target = f"127.0.0.1:{image_port}"
        _wait_serving(budget, budget_target, scratch / "budget.log")
        _wait_serving(image, image_target, scratch / "image.log")
        yield ServerProcesses(
            budget, image, budget_target, image_target, budget_settings, image_settings
        )
