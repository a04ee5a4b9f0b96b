"""How fast RecordUsageBatch ingests cache hits' records, on PostgreSQL: the
time of one 200-record batch (median and worst of BATCHES fresh batches,
from one client over loopback gRPC), the records a second that one sender
thread gets in, sending 200-record batches back to back for SECONDS, and the
ledger triggers' share of a 200-row insert (EXPLAIN ANALYZE).

    .venv/bin/python -m tests.bench.record_batch_rate [SECONDS]

A measurement to read, not a test: the figures are in the README.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
import uuid

import psycopg
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.common.auth import Authenticator, Role
from tests.conftest import TEST_SECRET
from tests.support.budget_server import running_budget
from tests.support.databases import PostgresDatabases, _conninfo, postgres_admin_url

BATCH = 200
BATCHES = 30
USERS = 50
TRIGGER = re.compile(r"Trigger (\S+): time=([\d.]+)")
EXECUTION = re.compile(r"Execution Time: ([\d.]+) ms")


def _records(count: int) -> list[pb.UsageRecord]:
    run = uuid.uuid4().hex[:8]
    return [
        pb.UsageRecord(
            request_id=f"hit-{run}-{i}",
            user_id=f"user-{i % USERS}",
            recipe_id=f"recipe-{i % 97}",
            prompt="Overhead photo of a lemon tart",
            outcome=pb.USAGE_OUTCOME_CACHE_HIT_EXACT,
            success=True,
            cost_saved_micros=40_000,
        )
        for i in range(count)
    ]


def _trigger_share(url: str) -> None:
    """One 200-row insert of cache hits, as RecordUsageBatch's, under EXPLAIN ANALYZE."""
    run = uuid.uuid4().hex[:8]
    rows = ",".join(
        f"('x-{run}-{i}', 'user-{i % USERS}', 'recipe-1', 'p', 1, '', '', '', '', 0, true, '',"
        " false, 0, true, 'exact', 'cache_hit_exact', 40000, 0, 0, now(), false, false, 'image')"
        for i in range(BATCH)
    )
    sql = (
        "EXPLAIN (ANALYZE, FORMAT TEXT) INSERT INTO budget_usage_records (request_id, user_id,"
        " recipe_id, prompt, prompt_length, size, quality, model, provider, cost_micros,"
        " success, error_message, fallback_used, generation_time_ms, cached, cache_hit,"
        " outcome, cost_saved_micros, input_tokens, output_tokens, created_at,"
        " similar_allowed, custom_prompt, kind) VALUES "
        + rows
        + " ON CONFLICT (user_id, request_id) DO NOTHING RETURNING id"
    )
    with psycopg.connect(_conninfo(url)) as connection:
        plan = "\n".join(row[0] for row in connection.execute(sql))
    total = float(EXECUTION.findall(plan)[0])
    triggers = {name: float(ms) for name, ms in TRIGGER.findall(plan)}
    print(f"200-row insert in PostgreSQL: {total:.1f} ms, of which triggers:")
    for name, ms in sorted(triggers.items(), key=lambda t: -t[1]):
        print(f"  {name}: {ms:.1f} ms")
    print(f"  all triggers: {sum(triggers.values()):.1f} ms ({sum(triggers.values()) / total:.0%})")


def main(seconds: float) -> None:
    databases = PostgresDatabases(postgres_admin_url())
    databases.check_reachable()
    databases.create_template()
    url = databases.create_copy()
    try:
        authenticator = Authenticator(TEST_SECRET)
        metadata = (
            ("authorization", f"Bearer {authenticator.mint(Role.SERVICE, 'recipe-backend')}"),
        )
        with running_budget(url, authenticator) as budget:

            def send(records: list[pb.UsageRecord]) -> float:
                started = time.perf_counter()
                answer = budget.stub.RecordUsageBatch(
                    pb.RecordUsageBatchRequest(usages=records), metadata=metadata
                )
                elapsed = time.perf_counter() - started
                assert all(r.recorded and not r.duplicate for r in answer.results)
                return elapsed

            send(_records(BATCH))  # warm the pool and the compiled statements
            times = sorted(send(_records(BATCH)) for _ in range(BATCHES))
            print(
                f"one {BATCH}-record batch: median {statistics.median(times) * 1000:.1f} ms,"
                f" worst {times[-1] * 1000:.1f} ms ({BATCHES} batches)"
            )
            sent, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                send(_records(BATCH))
                sent += BATCH
            rate = sent / (time.perf_counter() - started)
            print(f"one sender, {BATCH}-record batches for {seconds:.0f} s: {rate:,.0f} records/s")
        _trigger_share(url)
    finally:
        databases.drop_all()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)
