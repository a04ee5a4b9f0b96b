"""The service bench runs end to end (make bench BENCH=service_bench) in a
short mode: real server processes, client processes, every operation, CPU
from /proc. It measures nothing here; it proves the bench does not rot."""

from __future__ import annotations

import pytest

from tests.bench import cpu_accounting
from tests.bench.load_clients import ClientPool
from tests.bench.service_bench import OPERATIONS, Options, measure_backend
from tests.conftest import IN_CI
from tests.support.databases import PostgresDatabases, postgres_admin_url

pytestmark = [pytest.mark.bench, pytest.mark.timeout(240)]

SHORT = Options(
    seconds=0.2,
    backends=("postgresql", "sqlite"),
    kinds=frozenset(spec.kind for spec in OPERATIONS),
    server_processes=1,
    client_processes=2,
    client_threads=2,
    stats_scale=200,
)


def _require_postgres() -> None:
    try:
        PostgresDatabases(postgres_admin_url()).check_reachable()
    except Exception as exc:  # any connection failure means: no server here
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable: {exc}")
        pytest.skip(f"PostgreSQL is not reachable: {exc}")


@pytest.fixture(scope="module")
def clients():  # type: ignore[no-untyped-def]
    with ClientPool(SHORT.client_processes, SHORT.client_threads) as pool:
        yield pool


@pytest.mark.postgres
def test_every_operation_runs_on_postgresql_with_cpu_per_call(clients: ClientPool) -> None:
    _require_postgres()
    figures = measure_backend("postgresql", SHORT, clients)
    assert [f.name for f in figures] == [spec.name for spec in OPERATIONS]
    readable = cpu_accounting.proc_readable()
    for measured in figures:
        phases = [measured.callers_16, measured.callers_1, measured.open_loop]
        for phase in (p for p in phases if p is not None):
            assert phase.errors == 0, (measured.name, phase.first_error)
            assert phase.calls > 0, measured.name
        assert measured.cpu is not None
        if readable:
            assert measured.cpu.budget is not None and measured.cpu.image is not None
            assert measured.cpu.postgres is not None


def test_the_cache_hits_run_on_sqlite(clients: ClientPool) -> None:
    options = Options(**{**SHORT.__dict__, "kinds": frozenset({"exact", "similar"})})
    figures = measure_backend("sqlite", options, clients)
    assert [f.name for f in figures] == [
        spec.name for spec in OPERATIONS if spec.kind in ("empty", "exact", "similar")
    ]
    for measured in figures:
        assert measured.callers_16 is not None and measured.callers_16.calls > 0
        assert measured.callers_16.errors == 0, measured.callers_16.first_error
        assert measured.open_loop is not None and measured.open_loop.errors == 0
