"""GetSystemMetrics and ListTopUsers on PostgreSQL with a large ledger.

    make bench BENCH=system_metrics_bench
    RECIPEIMAGE_BENCH_SYSTEM_RECORDS=10000000 make bench BENCH=system_metrics_bench

Creates its own database on RECIPEIMAGE_TEST_POSTGRES_URL's server, migrates
it, loads RECIPEIMAGE_BENCH_SYSTEM_RECORDS usage records (default 1,000,000)
with INSERT ... SELECT generate_series, so the ledger's triggers fill the
rollups as they would for any insert, starts a real BudgetService in this
process and drops the database at the end. Each figure is printed beside the
empty-RPC baseline as a ratio of its rate.
"""

from __future__ import annotations

import os
import secrets
import time

import grpc
import psycopg
from google.protobuf import timestamp_pb2
from recipeimage.budget.v1 import budget_service_pb2_grpc
from recipeimage.budget.v1 import system_metrics_pb2 as mpb

from services.budget.main import build_app
from services.common.auth import Authenticator, Role
from services.common.db import create_db_engine
from services.common.migrations import upgrade
from tests.bench.harness import Measurement, drive, report
from tests.support.access import access
from tests.support.budget_server import budget_settings
from tests.support.databases import PostgresDatabases, _conninfo, postgres_admin_url

CALLERS = 16
SECONDS = 5.0
RECORDS = int(os.environ.get("RECIPEIMAGE_BENCH_SYSTEM_RECORDS", "1000000"))
USERS = 50_000
DAYS = 90

# Attempts over the `days` before `until`, users skewed (user-0 heaviest), 18
# model/size/quality combinations, outcomes as a cached recipe app sees them
# (55% generated, 30% exact and 5% similar cache hits, 5% failed with one of
# three reasons, 2% fallback, 3% refused).
LOAD_SQL = """
INSERT INTO budget_usage_records (
    request_id, user_id, recipe_id, prompt, prompt_length, size, quality, model,
    provider, cost_micros, success, error_message, fallback_used, generation_time_ms,
    cached, cache_hit, outcome, cost_saved_micros, input_tokens, output_tokens,
    reservation_id, created_at)
SELECT
    'load-' || g, 'user-' || n, 'recipe-' || (g %% 5000), 'dish ' || (g %% 5000), 10,
    (ARRAY['1024x1024', '1024x1536', '1536x1024'])[1 + k %% 3],
    (ARRAY['low', 'medium', 'high'])[1 + (k / 3) %% 3],
    (ARRAY['gpt-image-1.5', 'gpt-image-2'])[1 + (k / 9) %% 2],
    'openai',
    CASE WHEN o < 0.55 THEN 5000 + (g %% 160) * 1000 ELSE 0 END,
    o < 0.90,
    CASE WHEN o >= 0.90 AND o < 0.97
         THEN (ARRAY['CONTENT_POLICY_VIOLATION: refused', 'PROVIDER_TIMEOUT: slow',
                     'provider error'])[1 + g %% 3]
         ELSE '' END,
    o >= 0.95 AND o < 0.97,
    5,
    o >= 0.55 AND o < 0.90,
    CASE WHEN o >= 0.55 AND o < 0.85 THEN 'exact'
         WHEN o >= 0.85 AND o < 0.90 THEN 'similar' ELSE '' END,
    CASE WHEN o < 0.55 THEN 'generated'
         WHEN o < 0.85 THEN 'cache_hit_exact'
         WHEN o < 0.90 THEN 'cache_hit_similar'
         WHEN o < 0.95 THEN 'failed'
         WHEN o < 0.97 THEN 'fallback'
         ELSE 'refused' END,
    CASE WHEN o >= 0.55 AND o < 0.90 THEN 5000 + (g %% 160) * 1000 ELSE 0 END,
    0, 0, NULL,
    %(until)s::timestamptz - random() * %(days)s * interval '1 day'
FROM (
    SELECT g, floor(power(random(), 3) * %(users)s)::int AS n, random() AS o,
           (random() * 18)::int %% 18 AS k
    FROM generate_series(1, %(records)s) AS g
) AS attempts
"""


def load_ledger(url: str, records: int, users: int, days: int, until: object = "now") -> None:
    """Insert records in one statement (the triggers roll them up), then
    VACUUM ANALYZE what they wrote (what autovacuum does in time)."""
    with psycopg.connect(_conninfo(url), autocommit=True) as connection:
        connection.execute(
            LOAD_SQL,
            {"users": users, "days": days, "records": records, "until": until},
            prepare=False,
        )
        for table in (
            "budget_usage_records",
            "budget_usage_daily",
            "budget_system_spend",
            "budget_system_outcomes",
            "budget_system_totals",
            "budget_user_totals",
        ):
            connection.execute(f"VACUUM ANALYZE {table}")


def run(baseline: Measurement) -> None:
    databases = PostgresDatabases(postgres_admin_url())
    databases.check_reachable()
    url = databases.create_empty()
    try:
        engine = create_db_engine(url)
        try:
            upgrade("budget", engine)
        finally:
            engine.dispose()
        started = time.perf_counter()
        load_ledger(url, RECORDS, USERS, DAYS)
        print(
            f"(loaded {RECORDS:,} usage records over up to {USERS:,} users and {DAYS} days "
            f"in {time.perf_counter() - started:.0f} s, triggers and VACUUM ANALYZE included)",
            flush=True,
        )
        _measure(url, baseline)
    finally:
        databases.drop_all()


def _requests() -> list[tuple[str, str, object]]:
    now = int(time.time())
    metrics = "GetSystemMetrics"
    return [
        (metrics, "today, UTC", mpb.GetSystemMetricsRequest(period=1, time_zone="UTC")),
        (
            metrics,
            "today, Asia/Kolkata",
            mpb.GetSystemMetricsRequest(period=1, time_zone="Asia/Kolkata"),
        ),
        (
            metrics,
            "this month, Europe/Berlin",
            mpb.GetSystemMetricsRequest(period=3, time_zone="Europe/Berlin"),
        ),
        (
            metrics,
            "last 90 days, UTC, odd bounds",
            mpb.GetSystemMetricsRequest(
                period=4,
                start_time=timestamp_pb2.Timestamp(seconds=now - 90 * 86_400 + 1234),
                end_time=timestamp_pb2.Timestamp(seconds=now + 60),
                time_zone="UTC",
            ),
        ),
        ("ListTopUsers", "today by cost, 50", mpb.ListTopUsersRequest(period=1)),
        (
            "ListTopUsers",
            "this month by attempts, 50",
            mpb.ListTopUsersRequest(period=2, order_by=2),
        ),
    ]


def _measure(url: str, baseline: Measurement) -> None:
    authenticator = Authenticator(secrets.token_urlsafe(48))
    settings = budget_settings(url, db_pool_size=20)
    app = build_app(settings, access(authenticator))
    channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
    stub = budget_service_pb2_grpc.BudgetServiceStub(channel)
    admin = (("authorization", f"Bearer {authenticator.mint(Role.ADMIN, 'bench', 7200)}"),)
    try:
        for method, label, request in _requests():
            call = getattr(stub, method)
            call(request, metadata=admin, timeout=30)  # warm
            for callers in (CALLERS, 1):
                measured = drive(
                    f"{method} {label}, {callers} call.",
                    lambda _c, _i, call=call, request=request: call(
                        request, metadata=admin, timeout=30
                    ),
                    callers=callers,
                    seconds=SECONDS,
                )
                print(report(measured, baseline), flush=True)
    finally:
        channel.close()
        app.stop(0)
