"""RecordUsageBatch: each record written as RecordUsage would write it, on its
own (one result a record, in order; one bad record fails only itself), once
per user and request_id however often the batch is sent; and Admit's attempt
state for a request_id (what ImageService answers a retried cache hit by)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as pb

from tests.budget.conftest import usage_count
from tests.budget.test_ledger_and_stats import cache_hit


def batch(budget, tokens, *records: dict) -> list[pb.RecordUsageResult]:  # type: ignore[no-untyped-def]
    return list(
        budget.stub.RecordUsageBatch(
            pb.RecordUsageBatchRequest(usages=[pb.UsageRecord(**r) for r in records]),
            metadata=tokens.service(),
        ).results
    )


def reserve(budget, tokens, key: str, user: str = "u1") -> None:  # type: ignore[no-untyped-def]
    budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id=user, amount_micros=10_000, idempotency_key=key),
        metadata=tokens.service(),
    )


def test_each_record_has_its_own_result_and_a_bad_one_fails_only_itself(budget, tokens) -> None:
    reserve(budget, tokens, "held")
    bad = {**cache_hit("priced"), "cost_micros": 5}  # a hit has no cost
    results = batch(budget, tokens, cache_hit("a"), bad, cache_hit("held"), cache_hit("b", "u2"))

    assert [(r.user_id, r.request_id, r.recorded, r.duplicate) for r in results] == [
        ("u1", "a", True, False),
        ("u1", "priced", False, False),
        ("u1", "held", False, False),
        ("u2", "b", True, False),
    ]
    assert results[1].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "cost_micros" in results[1].message
    assert results[2].code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert results[2].reason == "ATTEMPT_HAS_RESERVATION"
    assert usage_count(budget) == 2


def test_a_batch_sent_again_or_by_two_senders_at_once_writes_each_record_once(
    budget, tokens
) -> None:
    records = [cache_hit(f"r{i}") for i in range(20)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: batch(budget, tokens, *records), range(4)))
    assert usage_count(budget) == 20
    for i in range(20):  # each record written by exactly one of the senders
        assert sum(not answer[i].duplicate for answer in answers) == 1
        assert all(answer[i].recorded for answer in answers)


@pytest.mark.parametrize("size", [0, 501])
def test_an_empty_or_oversized_batch_is_refused(budget, tokens, size: int) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        batch(budget, tokens, *[cache_hit(f"r{i}") for i in range(size)])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert usage_count(budget) == 0


def test_a_user_token_cannot_send_a_batch(budget, tokens) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        budget.stub.RecordUsageBatch(
            pb.RecordUsageBatchRequest(usages=[pb.UsageRecord(**cache_hit("a"))]),
            metadata=tokens.user("u1"),
        )
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert usage_count(budget) == 0


def test_admit_says_what_the_ledger_holds_for_a_request_id(budget, tokens) -> None:
    def attempt(request_id: str) -> int:
        return budget.stub.Admit(
            pb.AdmitRequest(user_id="u1", request_id=request_id), metadata=tokens.service()
        ).attempt

    reserve(budget, tokens, "held")
    batch(budget, tokens, cache_hit("done"))
    assert attempt("") == pb.ATTEMPT_STATE_UNSPECIFIED
    assert attempt("fresh") == pb.ATTEMPT_STATE_NEW
    assert attempt("done") == pb.ATTEMPT_STATE_RECORDED
    assert attempt("held") == pb.ATTEMPT_STATE_RESERVED
