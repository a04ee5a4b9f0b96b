"""On PostgreSQL with a loaded ledger, the statements GetSystemMetrics and
ListTopUsers run touch the ledger only through its created_at index, for the
partial hours at a range's edges: never a scan of the ledger, whatever the
range and zone. (The rollups are read as the planner likes: a month's trend
is most of a small table.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.protobuf import timestamp_pb2
from recipeimage.budget.v1 import system_metrics_pb2 as mpb
from sqlalchemy import event

from services.budget.domain.reconciliation import CheckedRange
from services.budget.store.reconciliation import ReconciliationQueries
from services.common.db import is_sqlite
from tests.bench.system_metrics_bench import load_ledger
from tests.support.budget_server import running_budget

LEDGER = "budget_usage_records"
EDGE_INDEX = "ix_budget_usage_records_created_at"
ROLLUPS = (
    "budget_system_spend",
    "budget_system_outcomes",
    "budget_system_totals",
    "budget_user_totals",
)


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def ts(instant: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(instant)
    return message


def test_no_statement_scans_the_ledger(database_url: str, authenticator, tokens) -> None:
    if is_sqlite(database_url):
        pytest.skip("query plans are checked on PostgreSQL")
    load_ledger(database_url, 60_000, 2_000, 40)
    now = datetime.now(UTC)
    odd = now - timedelta(days=20, minutes=17)
    requests = [
        mpb.GetSystemMetricsRequest(period=mpb.METRICS_PERIOD_DAY, time_zone="UTC"),
        mpb.GetSystemMetricsRequest(period=mpb.METRICS_PERIOD_DAY, time_zone="Asia/Kolkata"),
        mpb.GetSystemMetricsRequest(period=mpb.METRICS_PERIOD_MONTH, time_zone="Europe/Berlin"),
        mpb.GetSystemMetricsRequest(
            period=mpb.METRICS_PERIOD_RANGE,
            start_time=ts(odd),
            end_time=ts(odd + timedelta(days=19, hours=5, minutes=3)),
            time_zone="Asia/Kathmandu",
        ),
    ]
    with running_budget(database_url, authenticator) as budget:
        captured: list[tuple[str, Any]] = []

        def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            if statement.lstrip().upper().startswith("SELECT") and any(
                table in statement for table in (LEDGER, *ROLLUPS)
            ):
                captured.append((statement, parameters))

        engine = budget.app.engine
        event.listen(engine, "before_cursor_execute", capture)
        try:
            for request in requests:
                answer = budget.stub.GetSystemMetrics(request, metadata=tokens.admin())
                assert answer.generations > 0
            for period in (mpb.TOP_USERS_PERIOD_DAY, mpb.TOP_USERS_PERIOD_MONTH):
                page = budget.stub.ListTopUsers(
                    mpb.ListTopUsersRequest(period=period, page_size=3), metadata=tokens.admin()
                )
                budget.stub.ListTopUsers(
                    mpb.ListTopUsersRequest(
                        period=period, page_size=3, page_token=page.next_page_token
                    ),
                    metadata=tokens.admin(),
                )
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        # Two statements a GetSystemMetrics (facts, trend), one a page of top users.
        assert len(captured) == 2 * len(requests) + 4
        edge_reads = 0
        with engine.connect() as connection:
            for statement, parameters in captured:
                [[plan]] = connection.exec_driver_sql(
                    "EXPLAIN (FORMAT JSON) " + statement, parameters
                ).one()
                for node in nodes(plan["Plan"]):
                    relation = node.get("Relation Name")
                    if relation == LEDGER:
                        # Never a Seq Scan: only the edges' index ranges of created_at.
                        assert node["Node Type"] in ("Index Scan", "Bitmap Heap Scan"), plan
                        edge_reads += 1
                    if node["Node Type"] in ("Index Scan", "Bitmap Index Scan") and (
                        node.get("Index Name", "").startswith("ix_budget_usage_records")
                        or relation == LEDGER
                    ):
                        assert node["Index Name"] == EDGE_INDEX, plan
                        assert "created_at" in node["Index Cond"], plan
        # Every GetSystemMetrics reads its two edges, and no more.
        assert edge_reads == 2 * len(requests)
        # The triggers rolled the bulk load up exactly. (Its records cost money
        # without a reservation, so ReconcileLedger as a whole would say so.)
        with budget.app.sessions.begin() as session:
            checked = CheckedRange.starting(None, ZoneInfo("UTC"))
            assert ReconciliationQueries(session).system_rollup_differences(checked) == []
