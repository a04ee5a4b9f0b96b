"""AnalyzeCostOptimization on PostgreSQL: one user with 100,000 usage records
in the last 30 days, and the whole system (that user and 900,000 records of
5,000 others: 1,000,000); then each read of the analysis alone (store/optimization.py),
so the parts that still grow with the records are named.

    make bench BENCH=optimization_bench

Creates its own database on RECIPEIMAGE_TEST_POSTGRES_URL's server, migrates
it, starts a real BudgetService in this process, and drops the database at
the end. Each figure is printed beside the baseline as a ratio of its rate.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
from recipeimage.budget.v1 import budget_service_pb2_grpc
from recipeimage.budget.v1 import optimization_pb2 as opb
from sqlalchemy import text

from services.budget.main import build_app
from services.budget.store import optimization as reads
from services.budget.store.optimization_prompts import load_prompt_groups
from services.common.auth import Authenticator, Role
from services.common.db import create_db_engine
from services.common.migrations import upgrade
from tests.bench.harness import Measurement, drive, report
from tests.support.access import access
from tests.support.budget_server import budget_settings
from tests.support.databases import PostgresDatabases, _conninfo, postgres_admin_url

SECONDS = 5.0
HEAVY_RECORDS = 100_000
OTHER_RECORDS = 900_000
OTHER_USERS = 5_000

# Attempts over the last 30 days (29.9, so every one is in a 30-day range):
# 55% generated (a tenth with the caller's own prompt, a third with
# allow_similar off), 30% exact and 5% similar hits of an earlier image, 5%
# failed, 2% fallback, 3% refused; 2,000 dishes, 5,000 recipes; models, sizes
# and qualities mixed.
LOAD_SQL = """
INSERT INTO budget_usage_records (
    request_id, user_id, recipe_id, prompt, prompt_length, size, quality, model,
    provider, cost_micros, success, error_message, fallback_used, generation_time_ms,
    cached, cache_hit, outcome, cost_saved_micros, input_tokens, output_tokens,
    reservation_id, created_at, dish_key, similar_allowed, custom_prompt, image_id)
SELECT
    %(prefix)s || g,
    CASE WHEN %(users)s = 0 THEN 'heavy' ELSE 'user-' || (g %% %(users)s) END,
    'recipe-' || (g %% 5000),
    'Professional food photograph of dish ' || (g %% 5000),
    40,
    (ARRAY['1024x1024', '1024x1536', '1536x1024'])[1 + g %% 3],
    (ARRAY['low', 'medium', 'high'])[1 + (g / 3) %% 3],
    (ARRAY['gpt-image-1.5', 'gpt-image-2', 'gpt-image-2.5-sunburst'])[1 + (g / 9) %% 3],
    'openai',
    CASE WHEN o < 0.55 THEN 5000 + (g %% 160) * 1000 ELSE 0 END,
    o < 0.90,
    CASE WHEN o >= 0.90 AND o < 0.97 THEN 'provider error' ELSE '' END,
    o >= 0.95 AND o < 0.97,
    CASE WHEN o < 0.55 THEN 8000 ELSE 5 END,
    o >= 0.55 AND o < 0.90,
    CASE WHEN o >= 0.55 AND o < 0.85 THEN 'exact'
         WHEN o >= 0.85 AND o < 0.90 THEN 'similar' ELSE '' END,
    CASE WHEN o < 0.55 THEN 'generated'
         WHEN o < 0.85 THEN 'cache_hit_exact'
         WHEN o < 0.90 THEN 'cache_hit_similar'
         WHEN o < 0.95 THEN 'failed'
         WHEN o < 0.97 THEN 'fallback'
         ELSE 'refused' END,
    CASE WHEN o >= 0.55 AND o < 0.90 THEN 5000 ELSE 0 END,
    CASE WHEN o < 0.55 THEN 40 + (g %% 10) * 30 ELSE 0 END,
    CASE WHEN o < 0.55 THEN 1056 ELSE 0 END,
    NULL,
    now() - random() * 29.9 * interval '1 day',
    CASE WHEN g %% 10 <> 0 THEN md5('dish' || (g %% 2000)) || md5('d' || (g %% 2000)) END,
    g %% 3 <> 0,
    g %% 10 = 0,
    CASE WHEN o < 0.55 THEN md5('img' || g) || md5('i' || g)
         WHEN o < 0.90 THEN md5('img' || (g / 2)) || md5('i' || (g / 2)) END
FROM (SELECT g, random() AS o FROM generate_series(1, %(records)s) AS g) AS attempts
"""


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
        _measure(url, baseline)
    finally:
        databases.drop_all()


def _load(url: str) -> None:
    with psycopg.connect(_conninfo(url), autocommit=True) as connection:
        for prefix, users, records in (
            ("heavy-", 0, HEAVY_RECORDS),
            ("other-", OTHER_USERS, OTHER_RECORDS),
        ):
            connection.execute(
                LOAD_SQL, {"prefix": prefix, "users": users, "records": records}, prepare=False
            )
        connection.execute("VACUUM ANALYZE budget_usage_records")
        connection.execute("VACUUM ANALYZE budget_usage_daily")


def _measure(url: str, baseline: Measurement) -> None:
    started = time.perf_counter()
    _load(url)
    print(
        f"(loaded {HEAVY_RECORDS:,} records of one user and {OTHER_RECORDS:,} of "
        f"{OTHER_USERS:,} others in {time.perf_counter() - started:.0f} s; "
        "AnalyzeCostOptimization over the last 30 days)",
        flush=True,
    )
    authenticator = Authenticator(secrets.token_urlsafe(48))
    app = build_app(budget_settings(url, db_pool_size=8), access(authenticator))
    channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
    stub = budget_service_pb2_grpc.BudgetServiceStub(channel)
    admin = (("authorization", f"Bearer {authenticator.mint(Role.ADMIN, 'bench', 7200)}"),)
    try:
        for label, request, callers in (
            ("user (100,000 records)", opb.AnalyzeCostOptimizationRequest(user_id="heavy"), 1),
            ("user (100,000 records)", opb.AnalyzeCostOptimizationRequest(user_id="heavy"), 4),
            (
                "system (1,000,000 records)",
                opb.AnalyzeCostOptimizationRequest(scope=opb.OPTIMIZATION_SCOPE_SYSTEM),
                1,
            ),
        ):
            stub.AnalyzeCostOptimization(request, metadata=admin, timeout=120)  # warm
            measured = drive(
                f"AnalyzeCostOptimization {label}, {callers} call.",
                lambda _c, _i, request=request: stub.AnalyzeCostOptimization(
                    request, metadata=admin, timeout=120
                ),
                callers=callers,
                seconds=SECONDS,
            )
            print(report(measured, baseline), flush=True)
        _measure_parts(app.sessions)
    finally:
        channel.close()
        app.stop(0)


def _measure_parts(sessions: Any) -> None:
    """Each read of the analysis alone, the median of five, in one transaction."""
    end = datetime.now(UTC)
    start = end - timedelta(days=30)
    parts: dict[str, Callable[[Any, str | None], object]] = {
        "rollup (summary, settings)": lambda s, u: reads.load_scope_rollup(s, u, (start, end)),
        "system hit counts": lambda s, u: reads.load_system_hits(s, start, end),
        "prompt groups": lambda s, u: load_prompt_groups(s, u, start, end),
        "records (dish, repeats, unserved, retries)": lambda s, u: reads._record_figures(
            s, u, start, end
        ),
    }
    for scope, user_id in (("user", "heavy"), ("system", None)):
        for name, read in parts.items():
            took = []
            for _ in range(5):
                with sessions.begin() as session:
                    # As load_optimization_facts reads.
                    session.execute(text("SET LOCAL jit = off"))
                    session.execute(text("SET LOCAL work_mem = '64MB'"))
                    began = time.perf_counter()
                    read(session, user_id)
                    took.append((time.perf_counter() - began) * 1000)
            print(f"  {scope:<6} {name:<30} {statistics.median(took):>8.1f} ms", flush=True)
