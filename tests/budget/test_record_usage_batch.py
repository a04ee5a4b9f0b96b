"""RecordUsageBatch: each record written as RecordUsage would write it, on its
own (one result a record, in order; one bad record fails only itself), once
per user and request_id however often the batch is sent; and Admit's attempt
state for a request_id (what ImageService answers a retried cache hit by)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.common.status import rich_details
from tests.budget.abuse_support import CONTENT_POLICY, block_of, watching
from tests.budget.conftest import usage_count
from tests.budget.test_ledger_and_stats import cache_hit
from tests.support.budget_server import running_budget


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


def test_a_key_repeated_in_a_batch_is_written_once_and_answered_as_a_duplicate(
    budget, tokens
) -> None:
    results = batch(budget, tokens, cache_hit("a"), cache_hit("b"), cache_hit("a", saved=1))
    assert [(r.request_id, r.recorded, r.duplicate) for r in results] == [
        ("a", True, False),
        ("b", True, False),
        ("a", True, True),
    ]
    assert usage_count(budget) == 2
    assert usage_count(budget, request_id="a", cost_saved_micros=40_000) == 1


def test_a_settled_reservations_key_answers_as_a_duplicate_as_record_usage_does(
    budget, tokens
) -> None:
    held = budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id="u1", amount_micros=10_000, idempotency_key="settled"),
        metadata=tokens.service(),
    ).reservation
    budget.stub.ReleaseReservation(
        pb.ReleaseReservationRequest(reservation_id=held.reservation_id),
        metadata=tokens.service(),
    )
    single = budget.stub.RecordUsage(
        pb.RecordUsageRequest(usage=pb.UsageRecord(**cache_hit("settled"))),
        metadata=tokens.service(),
    )
    [result] = batch(budget, tokens, cache_hit("settled"))
    assert single.duplicate and result.recorded and result.duplicate
    assert usage_count(budget, request_id="settled", outcome="failed") == 1


def test_a_batch_racing_reservations_of_its_keys_leaves_one_record_a_key_and_every_spend(
    budget, tokens
) -> None:
    """Each key is both a cache hit sent in a batch and a ReserveBudget, at
    once. Whichever wins, the loser is refused (ATTEMPT_HAS_RESERVATION,
    ATTEMPT_ALREADY_RECORDED), or, when each ran before the other committed,
    both stand and the commit records its spend under the reservation's id:
    each key keeps one record, and no committed spend is missing."""
    keys = [f"k{i:02}" for i in range(40)]
    start = Barrier(5)

    def send(part: list[str]) -> list[pb.RecordUsageResult]:
        start.wait()
        return batch(budget, tokens, *[cache_hit(key) for key in part])

    def hold(part: list[str]) -> dict[str, str]:
        start.wait()
        outcomes = {}
        for key in part:
            try:
                held = budget.stub.ReserveBudget(
                    pb.ReserveBudgetRequest(user_id="u1", amount_micros=1_000, idempotency_key=key),
                    metadata=tokens.service(),
                ).reservation
                outcomes[key] = held.reservation_id
            except grpc.RpcError as refused:
                info = next(d for d in rich_details(refused) if d.DESCRIPTOR.name == "ErrorInfo")
                outcomes[key] = info.reason
        return outcomes

    with ThreadPoolExecutor(5) as pool:
        sent = [pool.submit(send, keys[i::2]) for i in range(2)]
        held = [pool.submit(hold, keys[i::3]) for i in range(3)]
        answers = {r.request_id: r for future in sent for r in future.result()}
        reservations = {k: v for future in held for k, v in future.result().items()}

    committed = 0
    for key in keys:
        answer, reservation = answers[key], reservations[key]
        if reservation == "ATTEMPT_ALREADY_RECORDED":
            assert answer.recorded and not answer.duplicate
            continue
        assert answer.recorded or answer.reason == "ATTEMPT_HAS_RESERVATION"
        budget.stub.CommitReservation(
            pb.CommitReservationRequest(reservation_id=reservation, actual_cost_micros=900),
            metadata=tokens.service(),
        )
        committed += 1
        both = answer.recorded  # the race both won: the spend under the reservation's id
        assert usage_count(budget, request_id=f"reservation:{reservation}") == int(both)
    for key in keys:  # one record a key: the batch's hit, or the commit's spend
        outcome = "cache_hit_exact" if answers[key].recorded else "generated"
        assert usage_count(budget, request_id=key) == 1
        assert usage_count(budget, request_id=key, outcome=outcome) == 1
    assert usage_count(budget, outcome="generated") == committed


def test_a_batchs_failures_count_toward_a_streak_as_record_usages_do(
    database_url, authenticator, clock, tokens
) -> None:
    """Five content-policy refusals in one batch block the user, as five
    RecordUsage calls would; a repeated one counts once."""
    failure = {
        "user_id": "u1",
        "outcome": pb.USAGE_OUTCOME_FAILED,
        "error_message": CONTENT_POLICY,
    }
    abuse = watching(content_policy_streak=(5, 3600))
    with running_budget(database_url, authenticator, clock=clock, abuse=abuse) as budget:
        four = [{**failure, "request_id": f"f{i}"} for i in range(4)]
        batch(budget, tokens, *four, four[0])
        assert block_of(budget, tokens) is None
        batch(budget, tokens, {**failure, "request_id": "f4"}, cache_hit("hit", "u2"))
        block = block_of(budget, tokens)
        assert block is not None and block.created_by == "content_policy_streak"
        assert block_of(budget, tokens, "u2") is None
