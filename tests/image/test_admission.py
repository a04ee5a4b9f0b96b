"""GenerateImage asks BudgetService to admit the call before any work (issue
9, step 3 of the flow): a blocked user and a user over its request rate are
refused with BudgetService's details intact, nothing is looked up, generated,
charged or recorded; and a provider's refusal of a caller's own prompt as
invalid is the caller's INPUT_REJECTED."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb

from services.budget.domain.admission import TierRates
from tests.image.conftest import generate_request, ledger, refusal, reservation_states
from tests.support.budget_server import admission
from tests.support.image_server import running_openai_pair, running_pair

RATES = TierRates(
    requests_per_minute=6, request_burst=2, generations_per_hour=0, max_concurrent_generations=0
)


@pytest.fixture
def limited_pair(database_url, authenticator, clock):  # type: ignore[no-untyped-def]
    with running_pair(
        database_url, authenticator, clock=clock, budget_overrides={"admission": admission(RATES)}
    ) as pair:
        yield pair


def test_a_user_over_its_request_rate_is_refused_before_any_work(
    limited_pair, tokens, clock
) -> None:
    pair = limited_pair
    for _ in range(2):  # the burst, a generation then a cache hit
        pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    error, details = refusal(
        lambda: pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details["ErrorInfo"].reason == "RATE_LIMITED"
    assert details["ErrorInfo"].metadata["rule"] == "user_requests"
    # Exactly when the next call is admitted: one interval (10 s at 6 a minute).
    assert details["RetryInfo"].retry_delay.ToTimedelta() == timedelta(seconds=10)
    assert len(ledger(pair)) == 2 and reservation_states(pair) == ["committed"]
    # Another user is not affected; the user is admitted again after the delay.
    pair.image.GenerateImage(generate_request(), metadata=tokens.user("u2"))
    clock.advance(timedelta(seconds=10))
    pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))


def test_a_blocked_user_is_refused_with_the_blocks_details(pair, tokens, clock) -> None:
    until = clock.now() + timedelta(hours=1)
    request = budget_pb.BlockUserRequest(user_id="u1", reason="chargeback fraud")
    request.expire_time.FromDatetime(until)
    pair.budget.stub.BlockUser(request, metadata=tokens.admin())

    error, details = refusal(
        lambda: pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    info = details["ErrorInfo"]
    assert info.reason == "USER_BLOCKED"
    assert info.metadata["block_reason"] == "chargeback fraud"
    assert details["RetryInfo"].retry_delay.ToTimedelta() == timedelta(hours=1)
    assert ledger(pair) == [] and reservation_states(pair) == []


def test_admission_fails_closed_when_budget_service_is_gone(pair, tokens) -> None:
    pair.budget.app.stop(0)
    error, details = refusal(
        lambda: pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    )
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_a_caller_prompt_the_provider_finds_invalid_is_input_rejected(
    database_url, authenticator, clock, fake, tokens
) -> None:
    with running_openai_pair(
        database_url,
        authenticator,
        fake,
        clock=clock,
        openai_max_retries=0,
    ) as pair:
        fake.script(fake.content_policy(code="invalid_value"))
        error, details = refusal(
            lambda: pair.image.GenerateImage(
                generate_request(prompt="a photo of soup"), metadata=tokens.user("u1")
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details["ErrorInfo"].reason == "INPUT_REJECTED"
        [record] = ledger(pair)
        assert record.outcome == "failed" and record.error_message.startswith("INPUT_REJECTED")
        # The same refusal of a prompt the service built is the service's fault.
        fake.script(fake.content_policy(code="invalid_value"))
        error, _ = refusal(
            lambda: pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE
