"""QuoteImage (issue 11, "Quotes"): for the same request in the same state, the
quote says what GenerateImage then does (source, cost, refusal with the same
reason, metadata and RetryInfo delay), and a quote changes nothing: no
ledger record, no window money, no rate state, no reservation, no cache
count, no lease."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as pb
from sqlalchemy import inspect, text

from services.budget.domain.admission import TierRates
from tests.image.conftest import (
    MEDIUM,
    dish_pairs,
    generate_request,
    ledger,
    per_image,
    proto_recipe,
    refusal,
    user_daily,
)
from tests.support.budget_server import admission
from tests.support.image_server import RunningPair, running_pair

PAIRS = dish_pairs()
# Two macaroni and cheese recipes: one dish.
MAC_A = proto_recipe(PAIRS.recipes["491"])
MAC_B = proto_recipe(PAIRS.recipes["568"])


def quote(pair: RunningPair, request: pb.GenerateImageRequest, metadata) -> pb.QuoteImageResponse:  # type: ignore[no-untyped-def]
    return pair.image.QuoteImage(pb.QuoteImageRequest(request=request), metadata=metadata)


def quote_then_generate(pair, tokens, request, user="u1"):  # type: ignore[no-untyped-def]
    """The quote, then what GenerateImage did: its answer or its error."""
    quoted = quote(pair, request, tokens.user(user))
    try:
        return quoted, pair.image.GenerateImage(request, metadata=tokens.user(user)), None
    except grpc.RpcError as error:
        return quoted, None, error


def assert_quote_served(quoted: pb.QuoteImageResponse, served: pb.GenerateImageResponse) -> None:
    assert not quoted.HasField("refusal")
    assert quoted.source == served.source
    assert quoted.cost_micros == served.cost_micros
    assert quoted.cost_saved_micros == served.cost_saved_micros
    assert quoted.similarity == pytest.approx(served.similarity)
    assert (quoted.model, quoted.size, quoted.quality) == (
        served.model,
        served.size,
        served.quality,
    )
    assert quoted.prompt == served.prompt
    assert quoted.degradation == served.degradation


def assert_quote_refused(quoted: pb.QuoteImageResponse, error: grpc.RpcError) -> dict[str, object]:
    _, details = refusal(lambda: (_ for _ in ()).throw(error))
    info = details["ErrorInfo"]
    assert quoted.HasField("refusal")
    assert quoted.source == pb.IMAGE_SOURCE_UNSPECIFIED and quoted.cost_micros == 0
    assert quoted.refusal.code == error.code().name
    assert quoted.refusal.reason == info.reason  # type: ignore[attr-defined]
    assert dict(quoted.refusal.metadata) == dict(info.metadata)  # type: ignore[attr-defined]
    retry = details.get("RetryInfo")
    if retry is None:
        assert not quoted.refusal.HasField("retry_delay")
    else:
        assert quoted.refusal.retry_delay == retry.retry_delay  # type: ignore[attr-defined]
    return details


def database_state(pair: RunningPair) -> dict[str, list[str]]:
    """Every row of every table of both services (one test database)."""
    with pair.budget.app.sessions.begin() as session:
        tables = inspect(session.connection()).get_table_names()
        return {
            table: sorted(
                repr(tuple(row)) for row in session.execute(text(f'SELECT * FROM "{table}"'))
            )
            for table in tables
        }


def set_limits(pair: RunningPair, tokens, **limits: int) -> None:  # type: ignore[no-untyped-def]
    pair.budget.stub.SetUserLimits(
        budget_pb.SetUserLimitsRequest(user_id="u1", overrides=budget_pb.LimitValues(**limits)),
        metadata=tokens.admin(),
    )


# ---- the quote is what GenerateImage does -------------------------------------------


def test_a_miss_that_fits_is_quoted_at_its_hold_and_its_expected_cost(pair, tokens, prices) -> None:
    request = generate_request()
    before = user_daily(pair, tokens)
    quoted, served, error = quote_then_generate(pair, tokens, request)
    assert error is None
    assert_quote_served(quoted, served)
    assert quoted.source == pb.IMAGE_SOURCE_GENERATED
    assert quoted.expected_cost_micros == served.cost_micros == per_image(prices)
    # The most it can cost is the reservation GenerateImage then held.
    with pair.budget.app.sessions.begin() as session:
        [amount] = session.execute(text("SELECT amount_micros FROM budget_reservations")).one()
    assert quoted.max_cost_micros == amount > per_image(prices)
    # What is left after it is what GetLimits shows once it is charged.
    daily = next(w for w in quoted.windows if w.window == "user_daily")
    assert daily.remaining_micros == before.remaining_micros
    assert daily.remaining_after_micros == user_daily(pair, tokens).remaining_micros
    assert {w.window for w in quoted.windows} == {
        "user_daily",
        "user_monthly",
        "system_daily",
        "system_monthly",
    }
    assert quoted.per_generation_limit_micros == 80_000


def test_an_exact_hit_is_quoted_free_with_what_it_saves(pair, tokens) -> None:
    first = pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    quoted, served, error = quote_then_generate(pair, tokens, generate_request())
    assert error is None
    assert_quote_served(quoted, served)
    assert quoted.source == pb.IMAGE_SOURCE_CACHE_EXACT
    assert (quoted.cost_micros, quoted.cost_saved_micros) == (0, first.cost_micros)
    assert quoted.image.image_id == served.image.image_id == first.image.image_id
    assert quoted.max_cost_micros == quoted.expected_cost_micros == 0


def test_a_similar_hit_is_quoted_only_when_allowed(pair, tokens) -> None:
    first = pair.image.GenerateImage(
        pb.GenerateImageRequest(recipe=MAC_A), metadata=tokens.user("u2")
    )
    not_allowed = quote(pair, pb.GenerateImageRequest(recipe=MAC_B), tokens.user("u1"))
    assert not_allowed.source == pb.IMAGE_SOURCE_GENERATED

    request = pb.GenerateImageRequest(recipe=MAC_B, allow_similar=True)
    quoted, served, error = quote_then_generate(pair, tokens, request)
    assert error is None
    assert_quote_served(quoted, served)
    assert quoted.source == pb.IMAGE_SOURCE_CACHE_SIMILAR
    assert quoted.image.image_id == first.image.image_id
    assert 0.6 <= quoted.similarity < 1.0


def test_a_miss_over_the_daily_limit_is_quoted_as_its_refusal(pair, tokens, prices) -> None:
    set_limits(pair, tokens, daily_micros=per_image(prices))  # below the hold
    quoted, served, error = quote_then_generate(pair, tokens, generate_request())
    assert served is None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_quote_refused(quoted, error)
    assert quoted.refusal.reason == "DAILY_LIMIT_EXCEEDED"
    assert quoted.refusal.metadata["limit_source"] == "override"
    # The quote still says what the image would cost and what is left.
    assert quoted.max_cost_micros > quoted.expected_cost_micros == per_image(prices)
    daily = next(w for w in quoted.windows if w.window == "user_daily")
    assert daily.remaining_after_micros == daily.remaining_micros == per_image(prices)


def test_a_miss_over_the_per_generation_limit_is_quoted_as_its_refusal(pair, tokens) -> None:
    set_limits(pair, tokens, per_generation_micros=1_000)
    quoted, served, error = quote_then_generate(pair, tokens, generate_request())
    assert served is None
    details = assert_quote_refused(quoted, error)
    assert quoted.refusal.reason == "PER_GENERATION_LIMIT_EXCEEDED"
    assert quoted.per_generation_limit_micros == 1_000
    assert "RetryInfo" in details


def test_a_blocked_user_is_quoted_as_blocked(pair, tokens, clock) -> None:
    block = budget_pb.BlockUserRequest(user_id="u1", reason="chargeback fraud")
    block.expire_time.FromDatetime(clock.now() + timedelta(minutes=90))
    pair.budget.stub.BlockUser(block, metadata=tokens.admin())
    quoted, served, error = quote_then_generate(pair, tokens, generate_request())
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert_quote_refused(quoted, error)
    assert quoted.refusal.reason == "USER_BLOCKED"
    assert quoted.refusal.retry_delay.ToTimedelta() == timedelta(minutes=90)


@pytest.mark.parametrize(
    ("rates", "reason"),
    [
        (TierRates(6, 2, 0, 0), "RATE_LIMITED"),
        (TierRates(0, 0, 1, 0), "GENERATION_RATE_LIMITED"),
        (TierRates(0, 0, 0, 1), None),  # the cap: checked while the first one is held
    ],
)
def test_rate_rules_are_quoted_with_their_exact_retry(
    database_url, authenticator, clock, tokens, rates, reason
) -> None:
    with running_pair(
        database_url, authenticator, clock=clock, budget_overrides={"admission": admission(rates)}
    ) as pair:
        if reason is None:
            # A held reservation of u1 (a crashed attempt) fills its one slot.
            pair.budget.stub.ReserveBudget(
                budget_pb.ReserveBudgetRequest(
                    user_id="u1", amount_micros=1_000, idempotency_key="held"
                ),
                metadata=tokens.service(),
            )
            reason = "CONCURRENCY_LIMIT_EXCEEDED"
        else:
            for _ in range(2):  # a generation, then a cache hit
                pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        other = generate_request(recipe=MAC_B)
        quoted, served, error = quote_then_generate(pair, tokens, other)
        assert served is None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert_quote_refused(quoted, error)
        assert quoted.refusal.reason == reason


def test_a_cached_image_is_quoted_free_even_at_the_generation_cap(
    database_url, authenticator, clock, tokens
) -> None:
    with running_pair(
        database_url,
        authenticator,
        clock=clock,
        budget_overrides={"admission": admission(TierRates(0, 0, 1, 0))},
    ) as pair:
        pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        quoted, served, error = quote_then_generate(pair, tokens, generate_request())
        assert error is None and quoted.source == pb.IMAGE_SOURCE_CACHE_EXACT
        assert_quote_served(quoted, served)


# ---- a quote changes nothing ----------------------------------------------------------


def test_a_quote_changes_nothing(database_url, authenticator, clock, tokens) -> None:
    rates = admission(TierRates(6, 3, 30, 2))
    with running_pair(
        database_url, authenticator, clock=clock, budget_overrides={"admission": rates}
    ) as pair:
        pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        before = database_state(pair)
        for request in (
            generate_request(),  # an exact hit
            generate_request(recipe=MAC_A),  # a miss
            generate_request(recipe=MAC_B, allow_similar=True, quality=MEDIUM),
        ):
            for _ in range(5):  # more than the request rule's burst of 3
                quoted = quote(pair, request, tokens.user("u1"))
                assert not quoted.HasField("refusal")
        assert database_state(pair) == before
        # The burst is as the first call left it: two more calls are admitted.
        pair.image.GenerateImage(generate_request(recipe=MAC_A), metadata=tokens.user("u1"))
        pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        assert len(ledger(pair)) == 3


# ---- access and bad input -------------------------------------------------------------


def test_a_user_quotes_only_for_itself(pair, tokens) -> None:
    mine = quote(pair, generate_request(), tokens.user("u1"))
    assert mine.source == pb.IMAGE_SOURCE_GENERATED
    error, _ = refusal(lambda: quote(pair, generate_request(user_id="u2"), tokens.user("u1")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    for metadata in (tokens.service(), tokens.admin()):
        assert quote(pair, generate_request(user_id="u2"), metadata).source
    error, _ = refusal(lambda: quote(pair, generate_request(), tokens.service()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error, _ = refusal(
        lambda: pair.image.QuoteImage(pb.QuoteImageRequest(request=generate_request()))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_bad_request_is_refused_and_nothing_is_written(pair, tokens) -> None:
    before = database_state(pair)
    error, details = refusal(
        lambda: quote(pair, generate_request(size="9x9", min_similarity=2.0), tokens.user("u1"))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in details["BadRequest"].field_violations}  # type: ignore[attr-defined]
    assert fields == {"size", "min_similarity"}
    assert database_state(pair) == before
