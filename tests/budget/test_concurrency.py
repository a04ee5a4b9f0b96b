"""The invariant under load: committed + reserved never exceeds a limit, and an
idempotency key is never charged twice, however many calls race (both databases)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import grpc
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.domain.limits import TierLimits
from tests.budget.conftest import counters, usage_count
from tests.support.budget_server import running_budget, tiers

THREADS = 24
TODAY = date(2026, 3, 10)
MONTH = date(2026, 3, 1)


def race(count: int, call):  # type: ignore[no-untyped-def]
    """Run call(i) for i in range(count) in as many threads, released together."""
    gate = threading.Barrier(count)

    def run(number: int):  # type: ignore[no-untyped-def]
        gate.wait()
        try:
            return call(number)
        except grpc.RpcError as error:
            return error.code()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_racing_reservations_get_exactly_what_the_limit_allows(
    database_url, authenticator, tokens, clock
) -> None:
    amount, allowed = 30_000, 7
    # Room for 7 and a bit, never for 8.
    limits = tiers(free=TierLimits(allowed * amount + amount - 1, 10_000_000, amount))
    with running_budget(database_url, authenticator, clock=clock, tiers=limits) as budget:
        results = race(
            THREADS,
            lambda n: budget.stub.ReserveBudget(
                pb.ReserveBudgetRequest(
                    user_id="u1", amount_micros=amount, idempotency_key=f"k{n}"
                ),
                metadata=tokens.service(),
            ),
        )
        granted = [r for r in results if isinstance(r, pb.ReserveBudgetResponse)]
        refused = Counter(r for r in results if not isinstance(r, pb.ReserveBudgetResponse))
        assert len(granted) == allowed
        assert refused == {grpc.StatusCode.RESOURCE_EXHAUSTED: THREADS - allowed}
        for scope, span, start in [
            ("user", "day", TODAY),
            ("user", "month", MONTH),
            ("system", "day", TODAY),
            ("system", "month", MONTH),
        ]:
            window = counters(budget, scope, span, start, "u1")
            assert (window.reserved_micros, window.spent_micros) == (allowed * amount, 0)

        # Committing and reserving at once still never goes over the limit.
        ids = [g.reservation.reservation_id for g in granted]

        def commit_or_reserve(n: int):  # type: ignore[no-untyped-def]
            if n < len(ids):
                return budget.stub.CommitReservation(
                    pb.CommitReservationRequest(reservation_id=ids[n], actual_cost_micros=amount),
                    metadata=tokens.service(),
                )
            return budget.stub.ReserveBudget(
                pb.ReserveBudgetRequest(
                    user_id="u1", amount_micros=amount, idempotency_key=f"late{n}"
                ),
                metadata=tokens.service(),
            )

        results = race(THREADS, commit_or_reserve)
        assert sum(isinstance(r, pb.ReserveBudgetResponse) for r in results) == 0
        window = counters(budget, "user", "day", TODAY, "u1")
        assert (window.spent_micros, window.reserved_micros) == (allowed * amount, 0)
        assert usage_count(budget) == allowed


def test_racing_first_calls_with_one_key_make_one_reservation(budget, tokens) -> None:
    results = race(
        THREADS,
        lambda n: budget.stub.ReserveBudget(
            pb.ReserveBudgetRequest(user_id="u1", amount_micros=50_000, idempotency_key="one"),
            metadata=tokens.service(),
        ),
    )
    assert all(isinstance(r, pb.ReserveBudgetResponse) for r in results), results
    assert len({r.reservation.reservation_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert counters(budget, "user", "day", TODAY, "u1").reserved_micros == 50_000
    assert counters(budget, "system", "month", MONTH).reserved_micros == 50_000


def test_racing_commits_of_one_reservation_charge_once(budget, tokens) -> None:
    held = budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id="u1", amount_micros=50_000, idempotency_key="one"),
        metadata=tokens.service(),
    ).reservation
    results = race(
        16,
        lambda n: budget.stub.CommitReservation(
            pb.CommitReservationRequest(
                reservation_id=held.reservation_id, actual_cost_micros=40_000
            ),
            metadata=tokens.service(),
        ),
    )
    assert all(r.reservation.committed_micros == 40_000 for r in results), results
    window = counters(budget, "user", "day", TODAY, "u1")
    assert (window.spent_micros, window.reserved_micros) == (40_000, 0)
    assert usage_count(budget) == 1


def test_racing_record_usage_with_one_request_id_writes_one_record(budget, tokens) -> None:
    results = race(
        16,
        lambda n: budget.stub.RecordUsage(
            pb.RecordUsageRequest(
                usage=pb.UsageRecord(
                    request_id="hit-1",
                    user_id="u1",
                    outcome=pb.USAGE_OUTCOME_CACHE_HIT_EXACT,
                    success=True,
                    cost_saved_micros=40_000,
                )
            ),
            metadata=tokens.service(),
        ),
    )
    assert all(isinstance(r, pb.RecordUsageResponse) for r in results), results
    assert sum(not r.duplicate for r in results) == 1
    assert usage_count(budget) == 1


def test_racing_first_calls_with_one_key_when_only_one_fits(
    database_url, authenticator, tokens, clock
) -> None:
    """The losers of the race must replay the winner's reservation, not be refused
    because the winner took the room they were competing for."""
    only_one = tiers(free=TierLimits(50_000, 10_000_000, 50_000))
    with running_budget(database_url, authenticator, clock=clock, tiers=only_one) as budget:
        results = race(
            THREADS,
            lambda n: budget.stub.ReserveBudget(
                pb.ReserveBudgetRequest(user_id="u1", amount_micros=50_000, idempotency_key="one"),
                metadata=tokens.service(),
            ),
        )
        assert all(isinstance(r, pb.ReserveBudgetResponse) for r in results), Counter(
            r for r in results if not isinstance(r, pb.ReserveBudgetResponse)
        )
        assert len({r.reservation.reservation_id for r in results}) == 1
        assert counters(budget, "user", "day", TODAY, "u1").reserved_micros == 50_000


def test_commits_racing_the_reaper_settle_each_reservation_once(
    database_url, authenticator, tokens, clock
) -> None:
    with running_budget(database_url, authenticator, clock=clock) as budget:
        ids = [
            budget.stub.ReserveBudget(
                pb.ReserveBudgetRequest(
                    user_id="u1", amount_micros=40_000, idempotency_key=f"k{n}"
                ),
                metadata=tokens.service(),
            ).reservation.reservation_id
            for n in range(10)
        ]
        clock.advance(timedelta(seconds=901))

        def commit_or_reap(n: int):  # type: ignore[no-untyped-def]
            if n < len(ids):
                return budget.stub.CommitReservation(
                    pb.CommitReservationRequest(reservation_id=ids[n], actual_cost_micros=30_000),
                    metadata=tokens.service(),
                ).reservation
            return budget.app.reap_expired()

        results = race(len(ids) + 4, commit_or_reap)
        committed = results[: len(ids)]
        assert all(r.state == pb.RESERVATION_STATE_COMMITTED for r in committed), results
        # Each reservation was expired by at most one reaper, and every one
        # expired first shows as an overrun.
        assert sum(results[len(ids) :]) == sum(r.overrun for r in committed)
        window = counters(budget, "user", "day", TODAY, "u1")
        assert (window.spent_micros, window.reserved_micros) == (10 * 30_000, 0)
        assert usage_count(budget) == len(ids)
