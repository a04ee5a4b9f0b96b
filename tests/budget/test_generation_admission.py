"""ReserveBudget's admission rules: the generation rates and the concurrency
caps, checked inside its transaction. Slots are freed by commit, release and
the reaper; a replayed key is never refused; a refusal holds nothing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import grpc
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.domain.admission import RuleName, SystemRates, TierRates
from tests.budget.admission_support import refusal_of, reserve, reserve_refusal
from tests.budget.conftest import T0, counters, reservation_states
from tests.support.budget_server import admission, running_budget

AMOUNT = 10_000


def rates(per_hour: int = 0, concurrent: int = 0) -> TierRates:
    return TierRates(0, 0, per_hour, concurrent)


def no_system(per_minute: int = 0, concurrent: int = 0) -> SystemRates:
    return SystemRates(0, 0, per_minute, concurrent)


def test_the_generation_rate_refuses_exactly_and_holds_nothing(
    database_url, authenticator, clock, tokens
) -> None:
    with running_budget(
        database_url, authenticator, clock=clock, admission=admission(free=rates(per_hour=3))
    ) as budget:
        first = reserve(budget, tokens, "k0")
        reserve(budget, tokens, "k1")
        reserve(budget, tokens, "k2")
        refusal = reserve_refusal(budget, tokens, "k3")
        assert refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refusal.reason == "GENERATION_RATE_LIMITED"
        assert refusal.metadata["rule"] == "user_generations"
        assert (refusal.metadata["limit"], refusal.metadata["period_seconds"]) == ("3", "3600")
        assert refusal.retry_after == timedelta(minutes=20)
        # A replay is never refused, even with no allowance left.
        again = reserve(budget, tokens, "k0")
        assert again.replayed and again.reservation == first.reservation
        # The refused attempt held no money and left no reservation.
        assert counters(budget, "user", "day", T0.date(), "u1").reserved_micros == 3 * AMOUNT
        assert len(reservation_states(budget)) == 3
        clock.advance(timedelta(minutes=20))
        reserve(budget, tokens, "k3")
        assert reserve_refusal(budget, tokens, "k4").retry_after == timedelta(minutes=20)


def test_the_system_generation_rate(database_url, authenticator, clock, tokens) -> None:
    settings = admission(system=no_system(per_minute=2))
    with running_budget(database_url, authenticator, clock=clock, admission=settings) as budget:
        reserve(budget, tokens, "a", "u1")
        reserve(budget, tokens, "b", "u2")
        refusal = reserve_refusal(budget, tokens, "c", "u3")
        assert (refusal.reason, refusal.metadata["rule"]) == (
            "SYSTEM_RATE_LIMITED",
            "system_generations",
        )
        assert refusal.retry_after == timedelta(seconds=30)


def test_a_users_concurrency_cap_is_freed_by_commit_release_and_the_reaper(
    database_url, authenticator, clock, tokens
) -> None:
    settings = admission(free=rates(concurrent=2))
    with running_budget(database_url, authenticator, clock=clock, admission=settings) as budget:
        a = reserve(budget, tokens, "a").reservation
        b = reserve(budget, tokens, "b").reservation
        refusal = reserve_refusal(budget, tokens, "c")
        assert refusal.reason == "CONCURRENCY_LIMIT_EXCEEDED"
        assert (refusal.metadata["limit"], refusal.metadata["in_flight"]) == ("2", "2")
        assert refusal.retry_after == timedelta(seconds=1)
        assert reserve(budget, tokens, "a").replayed  # a replay takes no slot
        assert reserve(budget, tokens, "c", user="u2")  # another user's own cap
        limits = budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u1"), metadata=tokens.admin())
        assert (limits.concurrency.limit, limits.concurrency.in_flight) == (2, 2)
        assert limits.concurrency.source == "tier:free"

        budget.stub.CommitReservation(
            pb.CommitReservationRequest(reservation_id=a.reservation_id, actual_cost_micros=1),
            metadata=tokens.service(),
        )
        c = reserve(budget, tokens, "c").reservation
        assert reserve_refusal(budget, tokens, "d").reason == "CONCURRENCY_LIMIT_EXCEEDED"
        budget.stub.ReleaseReservation(
            pb.ReleaseReservationRequest(reservation_id=b.reservation_id),
            metadata=tokens.service(),
        )
        reserve(budget, tokens, "d")
        assert reserve_refusal(budget, tokens, "e").reason == "CONCURRENCY_LIMIT_EXCEEDED"
        clock.advance(timedelta(hours=1))  # past the TTL: the reaper frees both slots
        assert budget.app.reap_expired() == 3
        reserve(budget, tokens, "e")
        reserve(budget, tokens, "f")
        assert reserve_refusal(budget, tokens, "g").reason == "CONCURRENCY_LIMIT_EXCEEDED"
        assert c.reservation_id in reservation_states(budget)


def test_the_system_concurrency_cap(database_url, authenticator, clock, tokens) -> None:
    settings = admission(system=no_system(concurrent=3))
    with running_budget(database_url, authenticator, clock=clock, admission=settings) as budget:
        for user in ("u1", "u2", "u3"):
            reserve(budget, tokens, "k", user)
        refusal = reserve_refusal(budget, tokens, "k", "u4")
        assert refusal.reason == "SYSTEM_CONCURRENCY_LIMIT_EXCEEDED"
        assert (refusal.metadata["limit"], refusal.metadata["in_flight"]) == ("3", "3")


def race(budget, tokens, callers: int, user_of):  # type: ignore[no-untyped-def]
    gate = threading.Barrier(callers)

    def call(number: int):  # type: ignore[no-untyped-def]
        gate.wait()
        try:
            return reserve(budget, tokens, f"k{number}", user_of(number))
        except grpc.RpcError as error:
            return refusal_of(error).reason

    with ThreadPoolExecutor(callers) as pool:
        return list(pool.map(call, range(callers)))


def test_concurrent_reservations_never_exceed_a_cap(
    database_url, authenticator, clock, tokens
) -> None:
    callers = 16
    settings = admission(free=rates(concurrent=3), system=no_system(concurrent=5))
    with running_budget(database_url, authenticator, clock=clock, admission=settings) as budget:
        results = race(budget, tokens, callers, lambda n: "u1")
        granted = [r for r in results if isinstance(r, pb.ReserveBudgetResponse)]
        assert len(granted) == 3, results
        assert results.count("CONCURRENCY_LIMIT_EXCEEDED") == callers - 3
        # Many users at once against the system's cap: 2 more fit.
        results = race(budget, tokens, callers, lambda n: f"user-{n}")
        assert sum(isinstance(r, pb.ReserveBudgetResponse) for r in results) == 2, results
        assert results.count("SYSTEM_CONCURRENCY_LIMIT_EXCEEDED") == callers - 2
        assert list(reservation_states(budget).values()) == ["held"] * 5


def test_a_concurrency_cap_in_shadow_mode_never_refuses_but_counts(
    database_url, authenticator, clock, tokens
) -> None:
    settings = admission(free=rates(concurrent=1), shadow=frozenset({RuleName.USER_CONCURRENCY}))
    with running_budget(database_url, authenticator, clock=clock, admission=settings) as budget:
        for key in ("a", "b", "c"):
            assert not reserve(budget, tokens, key).replayed
        counted = budget.app.metrics.registry.get_sample_value(
            "recipeimage_rate_shadow_refusals_total",
            {"service": "budget", "rule": "user_concurrency"},
        )
        assert counted == 2
        assert counters(budget, "user", "day", T0.date(), "u1").reserved_micros == 3 * AMOUNT
