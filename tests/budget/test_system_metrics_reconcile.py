"""Reconciliation covers the system rollups and the per-user totals: after
random traffic they equal the ledger; each corrupted or lost row is named."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import timestamp_pb2
from recipeimage.budget.v1 import budget_service_pb2 as pb
from sqlalchemy import text

from tests.budget.system_metrics_support import START, RandomTraffic, unlimited_budget
from tests.support.budget_server import ManualClock, RunningBudget


@pytest.fixture
def budget(database_url: str, authenticator, clock: ManualClock) -> Iterator[RunningBudget]:
    with unlimited_budget(database_url, authenticator, clock) as running:
        yield running


def reconcile(budget, tokens, **fields) -> pb.ReconcileLedgerResponse:  # type: ignore[no-untyped-def]
    return budget.stub.ReconcileLedger(pb.ReconcileLedgerRequest(**fields), metadata=tokens.admin())


def corrupt_one(budget, table: str, where: str, change: str | None) -> None:  # type: ignore[no-untyped-def]
    """Change (or, for None, delete) one row of a rollup."""
    with budget.app.sessions.begin() as session:
        row = session.execute(text(f"SELECT * FROM {table} WHERE {where} LIMIT 1")).mappings().one()
        key = {name: row[name] for name in row if name in KEYS}
        match = " AND ".join(f"{name} = :{name}" for name in key)
        statement = f"UPDATE {table} SET {change}" if change else f"DELETE FROM {table}"
        assert session.execute(text(f"{statement} WHERE {match}"), key).rowcount == 1


KEYS = ("kind", "start", "shard", "model", "size", "quality", "outcome", "reason", "user_id")


def test_each_corrupted_rollup_row_is_reported(budget, tokens, clock) -> None:
    RandomTraffic(budget, tokens, clock, seed=21).run(START, timedelta(days=2), 60)
    clean = reconcile(budget, tokens)
    assert clean.consistent, clean.differences
    corrupt_one(
        budget,
        "budget_system_outcomes",
        "kind = 'day' AND outcome = 'generated'",
        "cost_micros = cost_micros + 7",
    )
    corrupt_one(budget, "budget_system_spend", "kind = 'hour'", "cost_saved_micros = 123456789")
    corrupt_one(budget, "budget_system_totals", "kind = 'hour'", None)
    corrupt_one(
        budget, "budget_user_totals", "kind = 'month' AND user_id = 'u1'", "generations = 0"
    )
    result = reconcile(budget, tokens)
    assert not result.consistent
    fields = sorted((d.field, d.user_id) for d in result.differences)
    assert fields == [
        ("system_outcomes_rollup", ""),
        ("system_spend_rollup", ""),
        ("system_totals_rollup", ""),
        ("user_totals_rollup", "u1"),
    ]
    outcomes = next(d for d in result.differences if d.field == "system_outcomes_rollup")
    assert outcomes.counter_micros == outcomes.ledger_micros + 7
    # A check from a later month leaves these differences out.
    later = timestamp_pb2.Timestamp()
    later.FromDatetime(datetime(2026, 5, 1, tzinfo=UTC))
    assert reconcile(budget, tokens, start_time=later).consistent
