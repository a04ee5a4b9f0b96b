"""Admission is shared: two real BudgetService processes on one database
enforce one rate limit and one concurrency cap between them."""

from __future__ import annotations

from collections import Counter

import grpc
from recipeimage.budget.v1 import budget_service_pb2 as pb

from tests.budget.test_processes import CALLERS, race, zone_far_from_midnight
from tests.conftest import TEST_SECRET
from tests.support.budget_server import budget_processes


def test_two_replicas_admit_exactly_one_burst_and_one_cap(database_url, tokens) -> None:
    burst, cap = 7, 3
    env = {
        "RECIPEIMAGE_BUDGET_TIME_ZONE": zone_far_from_midnight(),
        # One a minute after a burst of 7: the race takes seconds, so exactly 7.
        "RECIPEIMAGE_RATE_FREE": f"requests_per_minute=1,request_burst={burst},"
        f"generations_per_hour=0,max_concurrent_generations={cap}",
    }
    with budget_processes(2, database_url, TEST_SECRET, env) as replicas:
        results = race(
            replicas,
            CALLERS,
            lambda stub, n: stub.Admit(
                pb.AdmitRequest(user_id="u1"), metadata=tokens.service(), timeout=30
            ),
        )
        assert sum(isinstance(r, pb.AdmitResponse) for r in results) == burst, Counter(
            map(type, results)
        )
        assert results.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == CALLERS - burst

        results = race(
            replicas,
            CALLERS,
            lambda stub, n: stub.ReserveBudget(
                pb.ReserveBudgetRequest(user_id="u1", amount_micros=1_000, idempotency_key=f"k{n}"),
                metadata=tokens.service(),
                timeout=30,
            ),
        )
        assert sum(isinstance(r, pb.ReserveBudgetResponse) for r in results) == cap
        assert results.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == CALLERS - cap
