"""An attempt whose ImageService crashed while it held money (issue 7, case 6):
a retry is answered with a documented error while the money is held, the
reaper records the attempt as abandoned, and a retry after that is answered
REQUEST_ALREADY_FAILED; nothing is charged twice."""

from __future__ import annotations

from datetime import timedelta

import grpc
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb

from tests.image.conftest import CAKE, SOUP, generate_request, ledger, refusal


def crashed_attempt(pair, tokens, request_id: str) -> None:  # type: ignore[no-untyped-def]
    """What a replica killed mid-generation leaves: a held reservation."""
    pair.budget.stub.ReserveBudget(
        budget_pb.ReserveBudgetRequest(
            user_id="u1", amount_micros=50_000, idempotency_key=request_id
        ),
        metadata=tokens.service(),
    )


def test_a_retry_while_the_crashed_attempt_holds_money_is_request_in_progress(pair, tokens) -> None:
    pair.image.GenerateImage(generate_request(SOUP), metadata=tokens.user("u2"))  # cached now
    crashed_attempt(pair, tokens, "r-crash")
    for recipe in (SOUP, CAKE):  # a cache hit, and a miss
        error, details = refusal(
            lambda recipe=recipe: pair.image.GenerateImage(
                generate_request(recipe, request_id="r-crash"), metadata=tokens.user("u1")
            )
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert details["ErrorInfo"].reason == "REQUEST_IN_PROGRESS"
    assert [r.user_id for r in ledger(pair)] == ["u2"]


def test_the_reaper_records_the_crashed_attempt_and_a_retry_is_already_failed(
    pair, tokens, clock
) -> None:
    crashed_attempt(pair, tokens, "r-crash")
    clock.advance(timedelta(seconds=pair.budget.app.settings.reservation_ttl_seconds + 1))
    assert pair.budget.app.reap_expired() == 1
    [record] = ledger(pair)
    assert (record.request_id, record.outcome, record.cost_micros) == ("r-crash", "abandoned", 0)

    error, details = refusal(
        lambda: pair.image.GenerateImage(
            generate_request(CAKE, request_id="r-crash"), metadata=tokens.user("u1")
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details["ErrorInfo"].reason == "REQUEST_ALREADY_FAILED"
    assert len(ledger(pair)) == 1
    check = pair.budget.stub.ReconcileLedger(
        budget_pb.ReconcileLedgerRequest(), metadata=tokens.admin()
    )
    assert check.consistent, check.differences
