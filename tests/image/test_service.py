"""ImageService over real gRPC, with a real BudgetService, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import time

import grpc
import pytest
from recipeimage.image.v1 import image_service_pb2 as pb

from services.budget.domain.limits import TierLimits
from tests.image.conftest import (
    CAKE,
    HIGH,
    LOW,
    MEDIUM,
    generate_request,
    ledger,
    per_image,
    refusal,
    reservation_states,
    user_daily,
)
from tests.support.budget_server import tiers
from tests.support.image_server import running_pair


def cache_stats(pair, tokens) -> pb.GetCacheStatsResponse:  # type: ignore[no-untyped-def]
    return pair.image.GetCacheStats(pb.GetCacheStatsRequest(), metadata=tokens.service())


def test_generate_charges_the_per_image_figure_then_the_same_request_is_a_free_exact_hit(
    pair, tokens, prices
) -> None:
    cost = per_image(prices)

    first = pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    assert first.source == pb.IMAGE_SOURCE_GENERATED
    assert first.cost_micros == cost
    assert first.cost_saved_micros == 0
    assert first.similarity == 0.0
    assert (first.model, first.size, first.quality) == (
        "gpt-image-2.5-sunburst",
        "1024x1024",
        MEDIUM,
    )
    assert "broccoli soup" in first.prompt
    assert len(first.request_id) == 32
    assert first.image.content_type == "image/png"

    daily = user_daily(pair, tokens)
    assert (daily.spent_micros, daily.reserved_micros) == (cost, 0)
    [generated] = ledger(pair)
    assert generated.outcome == "generated"
    assert generated.success is True
    assert generated.request_id == first.request_id
    assert generated.reservation_id
    assert (generated.user_id, generated.recipe_id) == ("u1", "r-soup")
    assert (generated.cost_micros, generated.cost_saved_micros) == (cost, 0)
    assert (generated.model, generated.size, generated.quality) == (
        "gpt-image-2.5-sunburst",
        "1024x1024",
        "medium",
    )
    assert generated.provider == "offline"
    assert (generated.prompt, generated.prompt_length) == (first.prompt, len(first.prompt))
    assert generated.cached is False

    second = pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    assert second.source == pb.IMAGE_SOURCE_CACHE_EXACT
    assert second.cost_micros == 0
    assert second.cost_saved_micros == cost
    assert second.similarity == 1.0
    assert second.image.image_id == first.image.image_id
    assert second.request_id != first.request_id

    assert user_daily(pair, tokens).spent_micros == cost  # nothing more charged
    records = ledger(pair)
    assert len(records) == 2
    hit = records[1]
    assert hit.outcome == "cache_hit_exact"
    assert (hit.cost_micros, hit.cost_saved_micros) == (0, cost)
    assert (hit.cached, hit.cache_hit, hit.success) == (True, "exact", True)
    assert hit.reservation_id is None
    assert reservation_states(pair) == ["committed"]

    stats = cache_stats(pair, tokens)
    assert (stats.entries, stats.exact_hits, stats.similar_hits, stats.misses) == (1, 1, 0, 1)
    assert stats.hit_rate == 0.5
    assert stats.total_cost_saved_micros == cost


def test_a_different_size_or_quality_is_not_a_hit(pair, tokens, prices) -> None:
    medium = pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    low = pair.image.GenerateImage(generate_request(quality=LOW), metadata=tokens.user("u1"))
    tall = pair.image.GenerateImage(generate_request(size="1024x1536"), metadata=tokens.user("u1"))
    high = pair.image.GenerateImage(generate_request(quality=HIGH), metadata=tokens.user("u1"))

    assert [r.source for r in (low, tall, high)] == [pb.IMAGE_SOURCE_GENERATED] * 3
    assert len({r.image.image_id for r in (medium, low, tall, high)}) == 4
    assert (low.quality, low.cost_micros) == (LOW, per_image(prices, "low"))
    assert (tall.size, tall.cost_micros) == ("1024x1536", per_image(prices, size="1024x1536"))
    assert high.cost_micros == per_image(prices, "high")
    assert [r.outcome for r in ledger(pair)] == ["generated"] * 4
    stats = cache_stats(pair, tokens)
    assert (stats.entries, stats.exact_hits, stats.misses) == (4, 0, 4)


def test_get_image_returns_the_stored_bytes(pair, tokens) -> None:
    generated = pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))

    reply = pair.image.GetImage(
        pb.GetImageRequest(image_id=generated.image.image_id), metadata=tokens.user("someone-else")
    )
    assert hashlib.sha256(reply.data).hexdigest() == generated.image.image_id
    assert reply.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert reply.image == generated.image
    assert reply.image.size_bytes == len(reply.data)
    # Content-addressed on disk: <store>/ab/cd/<sha>.png
    image_id = generated.image.image_id
    stored = pair.store_dir / image_id[:2] / image_id[2:4] / f"{image_id}.png"
    assert stored.read_bytes() == reply.data

    error, _ = refusal(
        lambda: pair.image.GetImage(
            pb.GetImageRequest(image_id="0" * 64), metadata=tokens.user("u")
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error, details = refusal(
        lambda: pair.image.GetImage(
            pb.GetImageRequest(image_id=image_id.upper()), metadata=tokens.user("u")
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details["BadRequest"].field_violations] == ["image_id"]


def test_over_the_daily_limit_is_refused_with_details_and_a_refused_record(
    database_url, authenticator, clock, tokens, prices
) -> None:
    cost = per_image(prices)
    small = tiers(
        free=TierLimits(
            daily_micros=cost + 1000, monthly_micros=10**9, per_generation_micros=80_000
        )
    )
    with running_pair(
        database_url, authenticator, clock=clock, budget_overrides={"tiers": small}
    ) as pair:
        pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))

        error, details = refusal(
            lambda: pair.image.GenerateImage(
                generate_request(CAKE, request_id="cake-1"), metadata=tokens.user("u1")
            )
        )
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details["ErrorInfo"].reason == "DAILY_LIMIT_EXCEEDED"
        assert details["QuotaFailure"].violations[0].subject == "user:u1"
        # The window resets at midnight UTC, twelve hours after T0.
        assert details["RetryInfo"].retry_delay.seconds == 12 * 3600

        refused = ledger(pair)[-1]
        assert (refused.request_id, refused.outcome) == ("cake-1", "refused")
        assert (refused.cost_micros, refused.success) == (0, False)
        assert "DAILY" in refused.error_message or "daily" in refused.error_message
        daily = user_daily(pair, tokens)
        assert (daily.spent_micros, daily.reserved_micros) == (cost, 0)
        # A cache hit costs nothing, so it is still served.
        hit = pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        assert hit.source == pb.IMAGE_SOURCE_CACHE_EXACT


def test_a_retired_model_is_a_failed_precondition_and_nothing_is_recorded(pair, tokens) -> None:
    error, details = refusal(
        lambda: pair.image.GenerateImage(
            generate_request(model="dall-e-3"), metadata=tokens.user("u1")
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = details["ErrorInfo"]
    assert info.reason == "MODEL_RETIRED"
    assert dict(info.metadata) == {
        "model": "dall-e-3",
        "retired_on": "2026-05-12",
        "replacement": "gpt-image-2.5-sunburst",
    }
    assert ledger(pair) == []
    assert reservation_states(pair) == []


def test_bad_fields_are_named_and_nothing_is_charged_or_recorded(pair, tokens) -> None:
    error, details = refusal(
        lambda: pair.image.GenerateImage(
            pb.GenerateImageRequest(
                recipe=pb.Recipe(title="x" * 301, ingredients=["salt"] * 101),
                size="999x999",
                quality=7,
                request_id="r" * 201,
            ),
            metadata=tokens.user("u1"),
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in details["BadRequest"].field_violations}
    assert fields == {"recipe.title", "recipe.ingredients", "size", "quality", "request_id"}

    for request, field in (
        (pb.GenerateImageRequest(recipe=pb.Recipe()), "recipe.title"),
        (generate_request(model="gpt-image-9"), "model"),
        (generate_request(prompt="p" * 32_001), "prompt"),
    ):
        error, details = refusal(
            lambda request=request: pair.image.GenerateImage(request, metadata=tokens.user("u1"))
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in details["BadRequest"].field_violations] == [field]

    assert ledger(pair) == []
    assert reservation_states(pair) == []
    daily = user_daily(pair, tokens)
    assert (daily.spent_micros, daily.reserved_micros) == (0, 0)


def test_who_may_call_what(pair, tokens) -> None:
    error, _ = refusal(
        lambda: pair.image.GenerateImage(generate_request(user_id="u2"), metadata=tokens.user("u1"))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error, details = refusal(
        lambda: pair.image.GenerateImage(generate_request(), metadata=tokens.service())
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details["BadRequest"].field_violations] == ["user_id"]
    error, _ = refusal(lambda: pair.image.GenerateImage(generate_request()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    error, _ = refusal(
        lambda: pair.image.GetCacheStats(pb.GetCacheStatsRequest(), metadata=tokens.user("u1"))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    served = pair.image.GenerateImage(
        generate_request(user_id="u2"), metadata=tokens.service("recipe-backend")
    )
    assert ledger(pair)[0].user_id == "u2"
    assert served.source == pb.IMAGE_SOURCE_GENERATED
    assert pair.image.GetCacheStats(pb.GetCacheStatsRequest(), metadata=tokens.admin()).entries == 1


def test_a_caller_prompt_is_used_as_given_and_keyed_normalized(pair, tokens) -> None:
    first = pair.image.GenerateImage(
        pb.GenerateImageRequest(prompt="  A bowl of   ramen,\nsteaming. "),
        metadata=tokens.user("u1"),
    )
    assert first.prompt == "A bowl of ramen, steaming."
    again = pair.image.GenerateImage(
        pb.GenerateImageRequest(prompt="A bowl of ramen, steaming."), metadata=tokens.user("u1")
    )
    assert again.source == pb.IMAGE_SOURCE_CACHE_EXACT


def test_the_same_request_id_after_success_is_served_without_a_second_record(pair, tokens) -> None:
    first = pair.image.GenerateImage(
        generate_request(request_id="attempt-1"), metadata=tokens.user("u1")
    )
    retry = pair.image.GenerateImage(
        generate_request(request_id="attempt-1"), metadata=tokens.user("u1")
    )
    assert retry.image.image_id == first.image.image_id
    assert retry.cost_micros == 0
    assert [(r.request_id, r.outcome) for r in ledger(pair)] == [("attempt-1", "generated")]
    assert cache_stats(pair, tokens).exact_hits == 0  # a retry is not a new use


@pytest.mark.parametrize("how", ["cancelled", "deadline"])
def test_a_generation_finishes_is_cached_and_committed_after_its_caller_has_gone(
    database_url, authenticator, clock, tokens, fake, how
) -> None:
    held = fake.held()
    fake.script(held)
    with running_pair(
        database_url, authenticator, clock=clock, provider="openai", openai_base_url=fake.base_url
    ) as pair:
        if how == "cancelled":
            future = pair.image.GenerateImage.future(generate_request(), metadata=tokens.user("u1"))
            assert fake.wait_for_requests(1)
            future.cancel()
        else:
            error, _ = refusal(
                lambda: pair.image.GenerateImage(
                    generate_request(), metadata=tokens.user("u1"), timeout=0.5
                )
            )
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert len(fake.requests) == 1
        assert held.gate is not None
        held.gate.set()
        deadline = time.monotonic() + 5
        while not ledger(pair) and time.monotonic() < deadline:
            time.sleep(0.02)
        [record] = ledger(pair)
        assert record.outcome == "generated"
        assert reservation_states(pair) == ["committed"]
        assert user_daily(pair, tokens).spent_micros == record.cost_micros > 0
        hit = pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        assert hit.source == pb.IMAGE_SOURCE_CACHE_EXACT
        assert len(fake.requests) == 1


@pytest.mark.parametrize("cached", [False, True], ids=["miss", "hit"])
def test_without_budget_service_nothing_is_generated_or_served(
    database_url, authenticator, clock, tokens, fake, cached
) -> None:
    with running_pair(
        database_url,
        authenticator,
        clock=clock,
        provider="openai",
        openai_base_url=fake.base_url,
        budget_deadline_seconds=1.0,
    ) as pair:
        if cached:
            pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        seen = len(fake.requests)
        pair.budget.app.stop(0)

        error, details = refusal(
            lambda: pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "BudgetService cannot be reached" in error.details()
        assert details["ErrorInfo"].reason == "BUDGET_UNAVAILABLE"
        assert len(fake.requests) == seen
