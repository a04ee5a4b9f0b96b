"""The management tools on PostgreSQL with a large ledger: ExportUsage's
throughput, the cost of resuming it deep into the ledger (keyset: the same as
at the start), SimulateLimits over the whole ledger, and ListUsersNearLimits.

    make bench BENCH=tools_bench            (1,000,000 records)
    TOOLS_BENCH_RECORDS=10000000 make bench BENCH=tools_bench

Loads the ledger as budget_bench does (its LOAD_SQL), in a database of its
own that is dropped at the end.
"""

from __future__ import annotations

import os
import secrets
import time

import grpc
import psycopg
from google.protobuf import timestamp_pb2
from recipeimage.budget.v1 import budget_service_pb2_grpc
from recipeimage.budget.v1 import management_tools_pb2 as tpb

from services.budget.main import build_app
from services.common.auth import Authenticator, Role
from tests.bench.budget_bench import DAYS, LOAD_SQL, USERS, migrated_budget_database
from tests.bench.harness import Measurement, drive, report
from tests.support.access import access
from tests.support.budget_server import budget_settings
from tests.support.databases import _conninfo

RECORDS = int(os.environ.get("TOOLS_BENCH_RECORDS", "1000000"))
RESUME_SECONDS = 5.0


def run(baseline: Measurement) -> None:
    with migrated_budget_database() as url:
        started = time.perf_counter()
        with psycopg.connect(_conninfo(url), autocommit=True) as connection:
            connection.execute(
                LOAD_SQL, {"users": USERS, "days": DAYS, "records": RECORDS}, prepare=False
            )
            connection.execute("VACUUM ANALYZE budget_usage_records")
        print(f"(loaded {RECORDS:,} usage records in {time.perf_counter() - started:.0f} s)")
        _measure(url, baseline)


def _measure(url: str, baseline: Measurement) -> None:
    authenticator = Authenticator(secrets.token_urlsafe(48))
    app = build_app(budget_settings(url, db_pool_size=4), access(authenticator))
    channel = grpc.insecure_channel(
        f"127.0.0.1:{app.port}", options=[("grpc.max_receive_message_length", 16 << 20)]
    )
    stub = budget_service_pb2_grpc.BudgetServiceStub(channel)
    admin = (("authorization", f"Bearer {authenticator.mint(Role.ADMIN, 'bench', 7200)}"),)
    try:
        started = time.perf_counter()
        count, cursor_near_end = 0, ""
        for message in stub.ExportUsage(tpb.ExportUsageRequest(), metadata=admin):
            count += len(message.records)
            if count <= RECORDS - 1000:
                cursor_near_end = message.cursor
        seconds = time.perf_counter() - started
        print(
            f"ExportUsage, all {count:,} records: {seconds:.1f} s, "
            f"{count / seconds:,.0f} records/s, one stream",
            flush=True,
        )
        deep = drive(
            "ExportUsage resumed 1,000 records before the end, 1 caller",
            lambda _c, _i: list(
                stub.ExportUsage(tpb.ExportUsageRequest(cursor=cursor_near_end), metadata=admin)
            ),
            callers=1,
            seconds=RESUME_SECONDS,
        )
        print(report(deep, baseline), flush=True)
        now = int(time.time())
        started = time.perf_counter()
        stub.SimulateLimits(
            tpb.SimulateLimitsRequest(
                start_time=timestamp_pb2.Timestamp(seconds=now - (DAYS + 1) * 86_400),
                end_time=timestamp_pb2.Timestamp(seconds=now + 60),
                tiers=[tpb.ProposedTierLimits(tier=tpb.TIER_NAME_FREE, daily_micros=100_000)],
            ),
            metadata=admin,
            timeout=3600,
        )
        seconds = time.perf_counter() - started
        print(
            f"SimulateLimits over all {RECORDS:,} records: {seconds:.1f} s, "
            f"{RECORDS / seconds:,.0f} records/s",
            flush=True,
        )
    finally:
        channel.close()
        app.stop(0)
