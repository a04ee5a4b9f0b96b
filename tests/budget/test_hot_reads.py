"""GetLimits and CheckBudget only read: on SQLite they do not wait for the
write lock (a reservation being written does not hold them up), on
PostgreSQL they send no BEGIN or COMMIT, and they still see every commit."""

from __future__ import annotations

import sqlite3

import pytest
from recipeimage.budget.v1 import budget_service_pb2 as pb
from sqlalchemy.engine import make_url

from tests.support.budget_server import running_budget


def test_reads_answer_while_a_writer_holds_the_sqlite_write_lock(
    database_url: str, authenticator, tokens
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the write lock is SQLite's")
    with running_budget(database_url, authenticator) as budget:
        budget.stub.ReserveBudget(
            pb.ReserveBudgetRequest(user_id="u1", amount_micros=1_000, idempotency_key="k1"),
            metadata=tokens.service(),
        )
        writer = sqlite3.connect(make_url(database_url).database, isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")  # what every writing use case takes first
            limits = budget.stub.GetLimits(
                pb.GetLimitsRequest(user_id="u1"), metadata=tokens.user("u1"), timeout=5
            )
            check = budget.stub.CheckBudget(
                pb.CheckBudgetRequest(user_id="u1", amount_micros=1_000),
                metadata=tokens.user("u1"),
                timeout=5,
            )
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert check.allowed
        assert sum(w.reserved_micros for w in limits.windows) == 4 * 1_000


def test_reads_see_what_was_committed_before_them(database_url: str, authenticator, tokens) -> None:
    with running_budget(database_url, authenticator) as budget:
        for number in range(3):
            held = budget.stub.ReserveBudget(
                pb.ReserveBudgetRequest(
                    user_id="u2", amount_micros=10_000, idempotency_key=f"k{number}"
                ),
                metadata=tokens.service(),
            ).reservation
            budget.stub.CommitReservation(
                pb.CommitReservationRequest(
                    reservation_id=held.reservation_id, actual_cost_micros=7_000
                ),
                metadata=tokens.service(),
            )
            limits = budget.stub.GetLimits(
                pb.GetLimitsRequest(user_id="u2"), metadata=tokens.user("u2")
            )
            assert {w.spent_micros for w in limits.windows} == {7_000 * (number + 1)}
            assert {w.reserved_micros for w in limits.windows} == {0}
