"""BudgetService on PostgreSQL: Reserve + Commit pairs with 16 concurrent
callers, and GetUsageStats with 1,000,000 usage records in the ledger.

    make bench BENCH=budget_bench

Creates its own database on RECIPEIMAGE_TEST_POSTGRES_URL's server, migrates
it, starts a real BudgetService in this process (as the baseline's server
is), and drops the database at the end. Each figure is printed beside the
baseline as a ratio of its rate.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import psycopg
from google.protobuf import timestamp_pb2
from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import budget_service_pb2_grpc

from services.budget.domain.admission import SystemRates, TierRates
from services.budget.domain.limits import Tier, TierLimits
from services.budget.main import build_app
from services.common.auth import Authenticator, Role
from services.common.db import create_db_engine
from services.common.migrations import upgrade
from tests.bench.harness import Measurement, drive, report
from tests.bench.load_clients import budget_call
from tests.support.access import access
from tests.support.budget_server import admission, budget_settings
from tests.support.databases import PostgresDatabases, _conninfo, postgres_admin_url

CALLERS = 16
PAIR_SECONDS = 10.0
STATS_SECONDS = 5.0
RECORDS = 1_000_000
USERS = 20_000
DAYS = 90
# Nothing is refused: the pairs measure the path that holds and spends.
# Users of the pairs: 16 callers x 50 users each, so rows of one user rarely
# collide; every pair takes the two shared system rows.
UNLIMITED = TierLimits(10**15, 10**15, 10**9)

# 1,000,000 attempts over the last 90 days. Users are skewed like a real
# audience (user-0 is the heaviest, most have a few records); 90% of a user's
# attempts use its usual model, size and quality (the app's settings), the
# rest any; outcomes as a cached recipe app sees them: 55% generated, 30%
# exact and 5% similar cache hits, 5% failed, 2% fallback, 3% refused.
LOAD_SQL = """
INSERT INTO budget_usage_records (
    request_id, user_id, recipe_id, prompt, prompt_length, size, quality, model,
    provider, cost_micros, success, error_message, fallback_used, generation_time_ms,
    cached, cache_hit, outcome, cost_saved_micros, input_tokens, output_tokens,
    reservation_id, created_at)
SELECT
    'load-' || g,
    'user-' || n,
    'recipe-' || (g %% 5000),
    'Professional food photograph of dish ' || (g %% 5000),
    40,
    (ARRAY['1024x1024', '1024x1536', '1536x1024'])[1 + k %% 3],
    (ARRAY['low', 'medium', 'high'])[1 + (k / 3) %% 3],
    (ARRAY['gpt-image-1.5', 'gpt-image-2.5-sunburst'])[1 + (k / 9) %% 2],
    'openai',
    CASE WHEN o < 0.55 THEN 5000 + (g %% 160) * 1000 ELSE 0 END,
    o < 0.90,
    CASE WHEN o >= 0.90 AND o < 0.97 THEN 'provider error' ELSE '' END,
    o >= 0.95 AND o < 0.97,
    CASE WHEN o < 0.55 THEN 8000 + g %% 20000 ELSE 5 END,
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
    CASE WHEN o < 0.55 THEN 40 ELSE 0 END,
    CASE WHEN o < 0.55 THEN 1056 + (g %% 3) * 3000 ELSE 0 END,
    NULL,
    now() - random() * %(days)s * interval '1 day'
FROM (
    SELECT g, n, o, CASE WHEN usual < 0.9 THEN n %% 18 ELSE g %% 18 END AS k
    FROM (
        SELECT g, floor(power(random(), 3) * %(users)s)::int AS n, random() AS o,
               random() AS usual
        FROM generate_series(1, %(records)s) AS g
    ) AS drawn
) AS attempts
"""


@contextmanager
def migrated_budget_database() -> Iterator[str]:
    """A new, migrated budget database on the test server (its URL), dropped
    at the end."""
    databases = PostgresDatabases(postgres_admin_url())
    databases.check_reachable()
    url = databases.create_empty()
    try:
        engine = create_db_engine(url)
        try:
            upgrade("budget", engine)
        finally:
            engine.dispose()
        yield url
    finally:
        databases.drop_all()


def run(baseline: Measurement) -> None:
    with migrated_budget_database() as url:
        _measure(url, baseline)


def _measure(url: str, baseline: Measurement) -> None:
    authenticator = Authenticator(secrets.token_urlsafe(48))
    settings = budget_settings(
        url,
        db_pool_size=20,
        tiers={tier: UNLIMITED for tier in Tier},
        system_daily_limit_micros=10**15,
        system_monthly_limit_micros=10**15,
        # The request rules on (each caller a user of its own), never refusing.
        admission=admission(
            free=TierRates(10**6, 10**6, 0, 0), system=SystemRates(10**6, 10**6, 0, 0)
        ),
    )
    app = build_app(settings, access(authenticator))
    channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
    stub = budget_service_pb2_grpc.BudgetServiceStub(channel)
    service = (("authorization", f"Bearer {authenticator.mint(Role.SERVICE, 'bench', 7200)}"),)
    try:
        print(report(_pairs(channel, service), baseline), flush=True)
        admit = drive(
            f"Admit (user and system request rules), {CALLERS} callers",
            lambda caller, _i: stub.Admit(
                pb.AdmitRequest(user_id=f"admit-{caller}"), metadata=service, timeout=30
            ),
            callers=CALLERS,
            seconds=STATS_SECONDS,
        )
        print(report(admit, baseline), flush=True)
        started = time.perf_counter()
        heaviest, typical = _load(url)
        print(
            f"(loaded {RECORDS:,} usage records over up to {USERS:,} users and {DAYS} days "
            f"in {time.perf_counter() - started:.0f} s, VACUUM ANALYZE included; GetUsageStats "
            "over a range for the median user and the heaviest, record counts in brackets)",
            flush=True,
        )
        now = time.time()
        for label, (user, count), days, callers in (
            ("typical", typical, 30, CALLERS),
            ("heaviest", heaviest[:2], 30, CALLERS),
            ("heaviest", (heaviest[0], heaviest[2]), DAYS, CALLERS),
            ("typical", typical, 30, 1),
            ("heaviest", (heaviest[0], heaviest[2]), DAYS, 1),
        ):
            request = pb.GetUsageStatsRequest(
                user_id=user,
                period=pb.STATS_PERIOD_RANGE,
                start_time=timestamp_pb2.Timestamp(seconds=int(now) - days * 86_400),
                end_time=timestamp_pb2.Timestamp(seconds=int(now) + 60),
            )
            stub.GetUsageStats(request, metadata=service, timeout=30)  # warm
            measured = drive(
                f"GetUsageStats {days}d {label} ({count:,}), {callers} call.",
                lambda _c, _i, request=request: stub.GetUsageStats(
                    request, metadata=service, timeout=30
                ),
                callers=callers,
                seconds=STATS_SECONDS,
            )
            print(report(measured, baseline), flush=True)
    finally:
        channel.close()
        app.stop(0)


def _pairs(channel, service) -> Measurement:  # type: ignore[no-untyped-def]
    # The service bench's own pair: 50 users per caller, every pair on the
    # shared system windows.
    call = budget_call("pair", {}, channel, service)

    def pair(caller: int, number: int) -> None:
        call(str(caller), number)

    pair(0, -1)  # warm the pool and the plans
    return drive(
        f"Reserve+Commit pair, {CALLERS} callers",
        pair,
        callers=CALLERS,
        seconds=PAIR_SECONDS,
    )


def _load(url: str) -> tuple[tuple[str, int, int], tuple[str, int]]:
    """Load the records in one statement (the ledger's trigger rolls them up
    as it would any insert), then VACUUM ANALYZE (what autovacuum does to an
    insert-only table). Returns the heaviest user (with its records
    in the last 30 days and in all) and a median user (last 30 days)."""
    with psycopg.connect(_conninfo(url), autocommit=True) as connection:
        connection.execute(
            LOAD_SQL, {"users": USERS, "days": DAYS, "records": RECORDS}, prepare=False
        )
        connection.execute("VACUUM ANALYZE budget_usage_records")
        connection.execute("VACUUM ANALYZE budget_usage_daily")
        counts = connection.execute(
            "SELECT user_id, count(*) FILTER (WHERE created_at >= now() - interval '30 days'),"
            " count(*) FROM budget_usage_records WHERE request_id LIKE 'load-%'"
            " GROUP BY user_id ORDER BY 2 DESC"
        ).fetchall()
    heaviest = counts[0]
    typical = counts[len(counts) // 2]
    return (heaviest[0], int(heaviest[1]), int(heaviest[2])), (typical[0], int(typical[1]))
