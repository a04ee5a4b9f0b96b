"""The services as their users see them: real BudgetService and ImageService
processes, driven from separate client processes, on PostgreSQL and on
SQLite (the embedded default), each operation as a ratio to an empty unary
RPC (grpc health Check) on the same server in the same run.

    make bench BENCH=service_bench                # a few minutes
    make bench BENCH=service_bench BENCH_SHORT=1  # about a minute (more on a loaded machine)

For each operation: closed loop at 16 callers (2 client processes x 8
threads) and at 1 caller (rate, p50, p99); open loop at a fixed offered rate
(p99, measured from each request's scheduled send time); CPU per operation of
each server process (and its children) and of the PostgreSQL backends serving
the bench database, from /proc, during the 16-caller phase. Issue 12's
targets are printed beside the figures; nothing here asserts them.

Options (environment variables):
  BENCH_SHORT             1: the short mode (the defaults below in brackets)
  BENCH_SECONDS           seconds per phase (default 5 [1])
  BENCH_BACKENDS          postgresql,sqlite (default both)
  BENCH_OPERATIONS        a comma-separated subset of OPERATIONS' kinds
  BENCH_SERVER_PROCESSES  processes per service, passed to the servers as
                          RECIPEIMAGE_SERVER_PROCESSES (default 1)
  BENCH_CLIENT_PROCESSES, BENCH_CLIENT_THREADS  (default 2 and 8)
  BENCH_STATS_SCALE       usage records and cache entries loaded on PostgreSQL
                          before measuring (default 100000 [10000])
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import psycopg
from recipeimage.common.v1 import image_quality_pb2
from recipeimage.image.v1 import image_service_pb2 as ipb
from recipeimage.image.v1 import image_service_pb2_grpc

from services.common.auth import Authenticator, Role
from tests.bench import cpu_accounting
from tests.bench.harness import Measurement
from tests.bench.load_clients import ClientPool, Operation, PhaseResult
from tests.bench.service_processes import BenchDatabase, ServerProcesses, bench_database
from tests.bench.service_processes import service_processes as start_services
from tests.bench.service_report import Cpu, Figures, describe, table, targets
from tests.support.fake_openai import fake_openai

# The baseline of __main__ (an in-process server) is not used: each server's
# own empty RPC is measured here, in the same run.
OWN_BASELINE = True

PROMPT_PREFIX = "service bench prompt "
PROMPTS = 32
SIMILAR_RECIPE = "491"  # a mac and cheese of tests/fixtures/dish_pairs.json
USAGE_STATS_DAYS = 30


@dataclass(frozen=True)
class Spec:
    kind: str
    name: str
    server: str  # "budget" or "image"
    offered: float  # the open loop's requests per second (0: no open loop)
    sixteen: bool = True  # a 16-caller phase (else 1 caller only)


OPERATIONS = (
    Spec("empty", "empty RPC: BudgetService health Check", "budget", 1000),
    Spec("pair", "ReserveBudget + CommitReservation", "budget", 300),
    Spec("limits", "GetLimits", "budget", 500),
    Spec("check", "CheckBudget", "budget", 500),
    Spec("empty", "empty RPC: ImageService health Check", "image", 1000),
    Spec("exact", "GenerateImage, exact cache hit", "image", 200),
    Spec("similar", "GenerateImage, similar cache hit", "image", 200),
    Spec("usage_stats", "GetUsageStats", "budget", 0, sixteen=False),
    Spec("cache_stats", "GetCacheStats", "image", 0, sixteen=False),
)


@dataclass(frozen=True)
class Options:
    seconds: float
    backends: tuple[str, ...]
    kinds: frozenset[str]
    server_processes: int
    client_processes: int
    client_threads: int
    stats_scale: int

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Options:
        env = dict(os.environ if env is None else env)
        kinds = env.get("BENCH_OPERATIONS", "")
        short = env.get("BENCH_SHORT", "") not in ("", "0")
        return cls(
            seconds=float(env.get("BENCH_SECONDS", "1" if short else "5")),
            backends=tuple(env.get("BENCH_BACKENDS", "postgresql,sqlite").split(",")),
            kinds=frozenset(k for k in kinds.split(",") if k)
            or frozenset(spec.kind for spec in OPERATIONS),
            server_processes=int(env.get("BENCH_SERVER_PROCESSES", "1")),
            client_processes=int(env.get("BENCH_CLIENT_PROCESSES", "2")),
            client_threads=int(env.get("BENCH_CLIENT_THREADS", "8")),
            stats_scale=int(env.get("BENCH_STATS_SCALE", "10000" if short else "100000")),
        )


def run(_baseline: Measurement | None = None, options: Options | None = None) -> None:
    options = options or Options.from_env()
    print(
        f"(service bench: {options.seconds:g} s a phase; load from {options.client_processes} "
        f"client processes x {options.client_threads} threads; "
        f"RECIPEIMAGE_SERVER_PROCESSES={options.server_processes}; /proc "
        f"{'readable' if cpu_accounting.proc_readable() else 'NOT readable: CPU n/a'}; "
        f"load average {_load_average()})",
        flush=True,
    )
    with ClientPool(options.client_processes, options.client_threads) as clients:
        for backend in options.backends:
            measure_backend(backend, options, clients)


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def measure_backend(backend: str, options: Options, clients: ClientPool) -> list[Figures]:
    secret = secrets.token_urlsafe(48)
    with (
        bench_database(backend) as database,
        fake_openai() as fake,
        start_services(
            database, fake.base_url, secret=secret, server_processes=options.server_processes
        ) as servers,
    ):
        print(f"\n== {_title(backend, database)} ==", flush=True)
        print(f"(BudgetService: {_settings(servers.budget_settings)})", flush=True)
        print(f"(ImageService: {_settings(servers.image_settings)})", flush=True)
        scale = _prepare(database, servers, secret, options)
        print(f"({scale})", flush=True)
        measured: dict[tuple[str, str], Figures] = {}
        every: dict[str, Figures] = {}
        for spec in OPERATIONS:
            if spec.kind not in options.kinds and spec.kind != "empty":
                continue
            figures = _measure(spec, backend, database, servers, secret, options, clients)
            measured[(spec.kind, spec.server)] = figures
            every.setdefault(spec.kind, figures)
            empty = measured[("empty", spec.server)]
            print("\n".join(describe(figures, empty, every)), flush=True)
        rows = [(f, measured[("empty", f.server)]) for f in measured.values()]
        print(
            "\n".join(["", *table(f"{_title(backend, database)}, load {_load_average()}", rows)]),
            flush=True,
        )
        return list(measured.values())


def _title(backend: str, database: BenchDatabase) -> str:
    if backend == "sqlite":
        return "SQLite (embedded default, a file per service)"
    return f"PostgreSQL (database {database.name}, both services)"


def _settings(env: dict[str, str]) -> str:
    hidden = ("RECIPEIMAGE_JWT_SECRET", "OPENAI_API_KEY")
    shown = {k: ("..." if k in hidden else v) for k, v in env.items()}
    return ", ".join(
        f"{k.removeprefix('RECIPEIMAGE_')}={v}"
        for k, v in shown.items()
        if not k.startswith(("RECIPEIMAGE_RATE_", "RECIPEIMAGE_ABUSE_"))
    ) + ("; admission rules and abuse triggers off" if "RECIPEIMAGE_RATE_FREE" in env else "")


def _operation(spec: Spec, servers: ServerProcesses, secret: str, stats_user: str) -> Operation:
    target = servers.budget_target if spec.server == "budget" else servers.image_target
    by_kind: dict[str, dict[str, object]] = {
        "exact": {"prompt_prefix": PROMPT_PREFIX, "prompts": PROMPTS},
        "similar": {"recipe": SIMILAR_RECIPE},
        "usage_stats": {"user_id": stats_user, "days": USAGE_STATS_DAYS},
    }
    params = by_kind.get(spec.kind, {})
    return Operation(spec.name, spec.kind, target, secret, params)


def _measure(
    spec: Spec,
    backend: str,
    database: BenchDatabase,
    servers: ServerProcesses,
    secret: str,
    options: Options,
    clients: ClientPool,
) -> Figures:
    stats_user = "user-0" if backend == "postgresql" else "bench-prime"
    operation = _operation(spec, servers, secret, stats_user)
    kind = "stats" if spec.kind.endswith("_stats") else spec.kind
    figures = Figures(spec.name, spec.server, targets=targets(backend, kind))
    seconds = options.seconds
    if spec.sixteen:
        callers = options.client_processes * options.client_threads
        with _cpu(database, servers) as cpu:
            figures.callers_16 = clients.closed(operation, callers=callers, seconds=seconds)
        figures.cpu = cpu(figures.callers_16)
        figures.callers_1 = clients.closed(operation, callers=1, seconds=seconds)
    else:
        with _cpu(database, servers) as cpu:
            figures.callers_1 = clients.closed(operation, callers=1, seconds=seconds)
        figures.cpu = cpu(figures.callers_1)
    if spec.offered:
        figures.offered = spec.offered
        figures.open_loop = clients.open(operation, rate=spec.offered, seconds=seconds)
    return figures


@contextmanager
def _cpu(
    database: BenchDatabase, servers: ServerProcesses
) -> Iterator[Callable[[PhaseResult], Cpu]]:
    """CPU per call of each process group over the block (call the yielded
    function with the block's result after it ends)."""
    postgres = (
        cpu_accounting.PostgresCpu(database.admin_conninfo, database.name)
        if database.backend == "postgresql"
        else None
    )
    before = (
        cpu_accounting.tree_seconds(servers.budget.pid),
        cpu_accounting.tree_seconds(servers.image.pid),
    )
    if postgres is not None:
        postgres.start()
    used: dict[str, float | None] = {}

    def per_call(result: PhaseResult) -> Cpu:
        calls = max(result.calls, 1)

        def each(seconds: float | None) -> float | None:
            return None if seconds is None else seconds / calls

        return Cpu(each(used["budget"]), each(used["image"]), each(used.get("postgres")))

    yield per_call
    after = (
        cpu_accounting.tree_seconds(servers.budget.pid),
        cpu_accounting.tree_seconds(servers.image.pid),
    )
    for name, start, end in zip(("budget", "image"), before, after, strict=True):
        used[name] = None if start is None or end is None else end - start
    used["postgres"] = postgres.stop() if postgres is not None else None


# -- what the phases need in the databases


def _prepare(
    database: BenchDatabase, servers: ServerProcesses, secret: str, options: Options
) -> str:
    """Fill the cache through the service (misses to the fake OpenAI) and, on
    PostgreSQL, load the stats' scale; say what is there."""
    token = Authenticator(secret).mint(Role.SERVICE, "bench", 7200)
    service = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(servers.image_target) as channel:
        stub = image_service_pb2_grpc.ImageServiceStub(channel)
        with ThreadPoolExecutor(8) as pool:
            similar = pool.submit(_prime_similar, stub, service)
            misses = [
                pool.submit(
                    stub.GenerateImage,
                    ipb.GenerateImageRequest(user_id="bench-prime", prompt=f"{PROMPT_PREFIX}{n}"),
                    metadata=service,
                    timeout=60,
                )
                for n in range(PROMPTS)
            ]
            similar.result()
            for future in misses:
                future.result()
    if database.backend == "postgresql" and options.stats_scale:
        started = time.perf_counter()
        _load_postgres(database, options.stats_scale)
        loaded = f"loaded in {time.perf_counter() - started:.0f} s; "
    else:
        loaded = ""
    return loaded + _scale(database)


def _prime_similar(
    stub: image_service_pb2_grpc.ImageServiceStub, service: tuple[tuple[str, str], ...]
) -> None:
    """A medium image of the recipe; a low-quality request of it with
    allow_similar is then a similar hit (its exact key differs by quality)."""
    from tests.image.conftest import dish_pairs, proto_recipe

    recipe = proto_recipe(dish_pairs().recipes[SIMILAR_RECIPE])
    stub.GenerateImage(
        ipb.GenerateImageRequest(
            user_id="bench-prime", recipe=recipe, quality=image_quality_pb2.IMAGE_QUALITY_MEDIUM
        ),
        metadata=service,
        timeout=60,
    )
    reply = stub.GenerateImage(
        ipb.GenerateImageRequest(
            user_id="bench-prime",
            recipe=recipe,
            quality=image_quality_pb2.IMAGE_QUALITY_LOW,
            allow_similar=True,
        ),
        metadata=service,
        timeout=60,
    )
    if reply.source != ipb.IMAGE_SOURCE_CACHE_SIMILAR:
        raise RuntimeError(f"the similar request was not a similar hit (source {reply.source})")


def _load_postgres(database: BenchDatabase, scale: int) -> None:
    """`scale` usage records over 90 days (budget_bench's mix, scale / 50
    users) and `scale` cache entries (cache_bench's), then VACUUM ANALYZE."""
    from tests.bench.budget_bench import DAYS, LOAD_SQL
    from tests.bench.cache_bench import _load_sql

    with psycopg.connect(database.budget_url, autocommit=True) as connection:
        connection.execute(
            LOAD_SQL,
            {"users": max(scale // 50, 1), "days": DAYS, "records": scale},
            prepare=False,
        )
        for statement in _load_sql(1, scale):
            connection.execute(statement, prepare=False)
        for table_name in ("budget_usage_records", "budget_usage_daily", "images", "cache_entries"):
            connection.execute(f"VACUUM ANALYZE {table_name}")


def _scale(database: BenchDatabase) -> str:
    if database.backend == "postgresql":
        with psycopg.connect(database.budget_url) as connection:
            records = connection.execute("SELECT count(*) FROM budget_usage_records").fetchone()
            user = connection.execute(
                "SELECT count(*) FROM budget_usage_records WHERE user_id = 'user-0'"
                " AND created_at >= now() - interval '30 days'"
            ).fetchone()
            entries = connection.execute("SELECT count(*) FROM cache_entries").fetchone()
        assert records and user and entries
        return (
            f"{records[0]:,} usage records; GetUsageStats: user-0's last "
            f"{USAGE_STATS_DAYS} days, {user[0]:,} records; GetCacheStats: 100 most used "
            f"of {entries[0]:,} cache entries"
        )
    with (
        sqlite3.connect(database.budget_url.removeprefix("sqlite:///")) as budget,
        sqlite3.connect(database.image_url.removeprefix("sqlite:///")) as image,
    ):
        records = budget.execute("SELECT count(*) FROM budget_usage_records").fetchone()
        user = budget.execute(
            "SELECT count(*) FROM budget_usage_records WHERE user_id = 'bench-prime'"
        ).fetchone()
        entries = image.execute("SELECT count(*) FROM cache_entries").fetchone()
    return (
        f"{records[0]:,} usage records (nothing loaded); GetUsageStats: bench-prime's "
        f"{user[0]:,} records; GetCacheStats: 100 most used of {entries[0]:,} cache entries"
    )
