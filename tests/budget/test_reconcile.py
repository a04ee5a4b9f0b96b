"""ReconcileLedger (and its command) proves the window counters equal the
ledger after every kind of traffic, and names each counter that does not."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2
from recipeimage.budget.v1 import budget_service_pb2 as pb
from sqlalchemy import text

from services.budget.reconcile import main as reconcile_main
from tests.budget.conftest import counters, usage_count

TTL = timedelta(seconds=900)


class Traffic:
    def __init__(self, budget, tokens, clock) -> None:  # type: ignore[no-untyped-def]
        self.budget, self.tokens, self.clock = budget, tokens, clock

    def reserve(self, key: str, amount: int, user: str = "u1") -> str:
        return self.budget.stub.ReserveBudget(
            pb.ReserveBudgetRequest(user_id=user, amount_micros=amount, idempotency_key=key),
            metadata=self.tokens.service(),
        ).reservation.reservation_id

    def commit(self, reservation_id: str, cost: int) -> pb.Reservation:
        return self.budget.stub.CommitReservation(
            pb.CommitReservationRequest(reservation_id=reservation_id, actual_cost_micros=cost),
            metadata=self.tokens.service(),
        ).reservation

    def release(self, reservation_id: str, outcome: int = pb.USAGE_OUTCOME_FAILED) -> None:
        self.budget.stub.ReleaseReservation(
            pb.ReleaseReservationRequest(
                reservation_id=reservation_id, usage=pb.UsageRecord(outcome=outcome)
            ),
            metadata=self.tokens.service(),
        )

    def record(self, key: str, outcome: int, user: str = "u1") -> None:
        self.budget.stub.RecordUsage(
            pb.RecordUsageRequest(
                usage=pb.UsageRecord(
                    request_id=key, user_id=user, outcome=outcome, cost_saved_micros=5
                )
            ),
            metadata=self.tokens.service(),
        )

    def everything(self) -> None:
        """Every path that moves money or writes the ledger, over a month end."""
        self.clock.set(datetime(2026, 3, 31, 23, 0, tzinfo=UTC))
        self.commit(self.reserve("plain", 50_000), 40_000)
        self.commit(self.reserve("above-hold", 10_000), 12_500)  # 2,500 uncovered
        self.release(self.reserve("failed", 30_000))
        self.release(self.reserve("fallback", 30_000), pb.USAGE_OUTCOME_FALLBACK)
        late = self.reserve("late", 20_000, user="u2")
        forgotten = self.reserve("forgotten", 20_000, user="u2")
        released_late = self.reserve("released-late", 20_000, user="u2")
        self.reserve("expires", 7_000)
        self.record("hit", pb.USAGE_OUTCOME_CACHE_HIT_EXACT)
        self.record("refused", pb.USAGE_OUTCOME_REFUSED, user="u2")
        # Past the TTL and into April.
        self.clock.set(datetime(2026, 4, 1, 0, 5, tzinfo=UTC) + TTL)
        assert self.budget.app.reap_expired() == 4
        assert self.commit(late, 19_000).overrun
        self.release(released_late)
        self.commit(self.reserve("april", 30_000, user="u2"), 30_000)
        self.reserve("april-held", 3_000)
        assert forgotten  # expired and never settled: an abandoned record, no money


def reconcile(budget, tokens, **fields) -> pb.ReconcileLedgerResponse:  # type: ignore[no-untyped-def]
    return budget.stub.ReconcileLedger(pb.ReconcileLedgerRequest(**fields), metadata=tokens.admin())


def test_after_every_kind_of_traffic_the_counters_equal_the_ledger(budget, tokens, clock) -> None:
    Traffic(budget, tokens, clock).everything()
    result = reconcile(budget, tokens)
    assert result.consistent, result.differences
    assert list(result.differences) == []
    assert result.reservations_checked == 10
    # Day and month windows of u1, u2 and the system, on 31 March and 1 April.
    assert result.windows_checked == 12
    # The overruns are counted where GetLimits shows them (see the reaper tests).
    assert counters(budget, "user", "day", date(2026, 3, 31), "u1").overrun_micros == 2_500
    assert counters(budget, "user", "day", date(2026, 3, 31), "u2").overrun_micros == 19_000
    assert counters(budget, "system", "month", date(2026, 3, 1)).overrun_micros == 21_500
    # One record an attempt: the late commit and the late release amended the
    # reaper's abandoned records; "forgotten" and "expires" keep theirs.
    assert usage_count(budget) == 11
    assert usage_count(budget, outcome="abandoned") == 2


def corrupt(budget, statement: str) -> None:  # type: ignore[no-untyped-def]
    with budget.app.sessions.begin() as session:
        session.execute(text(statement))


def test_each_difference_is_named(budget, tokens, clock) -> None:
    Traffic(budget, tokens, clock).everything()
    corrupt(
        budget,
        "UPDATE budget_windows SET spent_micros = spent_micros + 5 "
        "WHERE scope = 'user' AND subject = 'u1' AND kind = 'day' AND start_date = '2026-03-31'",
    )
    corrupt(
        budget,
        "UPDATE budget_windows SET reserved_micros = 0, overrun_micros = 1 "
        "WHERE scope = 'system' AND kind = 'month' AND start_date = '2026-04-01'",
    )
    # A window the ledger knows nothing of, and a counter row lost.
    corrupt(
        budget,
        "INSERT INTO budget_windows (scope, subject, kind, start_date, spent_micros, "
        "reserved_micros, overrun_micros) VALUES ('user', 'ghost', 'day', '2026-03-15', 9, 0, 0)",
    )
    corrupt(
        budget,
        "DELETE FROM budget_windows WHERE scope = 'user' AND subject = 'u2' AND kind = 'month' "
        "AND start_date = '2026-04-01'",
    )
    # A rollup that lost an attempt.
    corrupt(
        budget,
        "UPDATE budget_usage_daily SET generations = generations - 1 "
        "WHERE user_id = 'u2' AND outcome = 'refused'",
    )
    # A reservation that says it charged more than its usage record shows.
    corrupt(
        budget,
        "UPDATE budget_reservations SET committed_micros = 41000 WHERE idempotency_key = 'plain'",
    )
    result = reconcile(budget, tokens)
    assert not result.consistent
    found = {
        (d.window_kind, d.user_id, d.field, d.counter_micros, d.ledger_micros)
        for d in result.differences
    }
    march_31, april = datetime(2026, 3, 31, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    assert found == {
        (pb.WINDOW_KIND_USER_DAILY, "u1", "spent_micros", 52_505, 52_500),
        (pb.WINDOW_KIND_SYSTEM_MONTHLY, "", "reserved_micros", 0, 3_000),
        (pb.WINDOW_KIND_SYSTEM_MONTHLY, "", "overrun_micros", 1, 0),
        (pb.WINDOW_KIND_USER_DAILY, "ghost", "spent_micros", 9, 0),
        (pb.WINDOW_KIND_USER_MONTHLY, "u2", "spent_micros", 0, 30_000),
        (pb.WINDOW_KIND_UNSPECIFIED, "u1", "usage_record", 41_000, 40_000),
        (pb.WINDOW_KIND_UNSPECIFIED, "u2", "usage_rollup", 0, 0),
    }
    starts = {
        (d.window_kind, d.user_id): d.window_start_time.ToDatetime(tzinfo=UTC)
        for d in result.differences
        if d.window_kind
    }
    assert starts[(pb.WINDOW_KIND_USER_DAILY, "u1")] == march_31
    assert starts[(pb.WINDOW_KIND_SYSTEM_MONTHLY, "")] == april
    reservation = next(d for d in result.differences if d.field == "usage_record")
    assert len(reservation.reservation_id) == 32

    # Checking only from April leaves March's differences out.
    start = timestamp_pb2.Timestamp()
    start.FromDatetime(april)
    april_only = reconcile(budget, tokens, start_time=start)
    assert {(d.user_id, d.field) for d in april_only.differences} == {
        ("", "reserved_micros"),
        ("", "overrun_micros"),
        ("u2", "spent_micros"),
    }
    assert april_only.reservations_checked == 2


def test_the_reconcile_command_exits_nonzero_on_a_difference(
    budget, tokens, clock, database_url, monkeypatch, capsys
) -> None:
    Traffic(budget, tokens, clock).everything()
    monkeypatch.setenv("RECIPEIMAGE_BUDGET_DATABASE_URL", database_url)
    assert reconcile_main([]) == 0
    assert json.loads(capsys.readouterr().out)["consistent"] is True
    corrupt(budget, "UPDATE budget_windows SET spent_micros = spent_micros + 1")
    assert reconcile_main(["--since", "2026-04-01"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["consistent"] is False
    assert {d["start_date"] for d in report["differences"]} == {"2026-04-01"}


def test_reconciliation_is_for_admins(budget, tokens) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        budget.stub.ReconcileLedger(pb.ReconcileLedgerRequest(), metadata=tokens.service())
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
