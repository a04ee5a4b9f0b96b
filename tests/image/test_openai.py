"""The OpenAI provider with the real `openai` client against a local fake of the
Images API: first the provider alone, then ImageService end to end."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import grpc
import pytest
from recipeimage.image.v1 import image_service_pb2 as pb

from services.common.errors import ContentRefused, DeadlineExceeded, QuotaExceeded, Unavailable
from services.common.prices import TokenUsage
from services.image.adapters.providers.openai_provider import OpenAIProvider
from services.image.domain.end_users import end_user_id
from services.image.settings import DEFAULT_MODEL
from tests.image.conftest import (
    CAKE,
    generate_request,
    ledger,
    refusal,
    reservation_states,
    user_daily,
)
from tests.support.access import TEST_END_USER_SALT
from tests.support.fake_openai import DEFAULT_USAGE, FakeOpenAI, Scripted, image_for
from tests.support.image_server import running_openai_pair


def provider(fake: FakeOpenAI, *, retries: int = 2, timeout: float = 5.0) -> OpenAIProvider:
    return OpenAIProvider(
        api_key="sk-test", base_url=fake.base_url, timeout_seconds=timeout, max_retries=retries
    )


def generate(openai: OpenAIProvider):  # type: ignore[no-untyped-def]
    return openai.generate("A bowl of soup", DEFAULT_MODEL, "1024x1024", "medium")


# ---- the provider alone ---------------------------------------------------------


def test_success_decodes_the_image_and_reads_the_usage(fake) -> None:
    openai = provider(fake)
    image = generate(openai)
    openai.close()

    assert image.data == image_for("A bowl of soup")
    assert image.content_type == "image/png"
    assert image.provider == "openai"
    assert image.usage == TokenUsage(57, 0, 439, 0)
    [request] = fake.requests
    assert request.path == "/v1/images/generations"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body == {
        "model": DEFAULT_MODEL,
        "prompt": "A bowl of soup",
        "size": "1024x1024",
        "quality": "medium",
        "n": 1,
    }


def test_a_response_without_usage_reports_none(fake) -> None:
    fake.script(fake.success(usage=None))
    assert generate(provider(fake)).usage is None


def test_rate_limits_are_retried_honouring_retry_after(fake) -> None:
    fake.script(fake.rate_limited(retry_after="0.01"), fake.rate_limited(retry_after="0.01"))
    image = generate(provider(fake, retries=2))
    assert image.usage is not None
    assert len(fake.requests) == 3


def test_a_rate_limit_that_persists_is_quota_exceeded_with_the_servers_retry_after(fake) -> None:
    fake.script(fake.rate_limited(retry_after="7"))
    with pytest.raises(QuotaExceeded) as raised:
        generate(provider(fake, retries=0))
    assert raised.value.info.reason == "PROVIDER_RATE_LIMITED"
    assert raised.value.subject == "provider:openai"
    assert raised.value.retry_after == timedelta(seconds=7)

    fake.script(fake.rate_limited(retry_after=None))
    with pytest.raises(QuotaExceeded) as raised:
        generate(provider(fake, retries=0))
    assert raised.value.retry_after == timedelta(seconds=5)  # the default


def test_insufficient_quota_is_not_retried(fake) -> None:
    fake.script(fake.insufficient_quota(), fake.insufficient_quota(), fake.insufficient_quota())
    with pytest.raises(QuotaExceeded) as raised:
        generate(provider(fake, retries=2))
    assert raised.value.info.reason == "PROVIDER_QUOTA_EXHAUSTED"
    assert raised.value.subject == "provider:openai"
    assert len(fake.requests) == 1


@pytest.mark.parametrize("code", ["moderation_blocked", "content_policy_violation"])
def test_a_content_policy_refusal_is_final(fake, code) -> None:
    fake.script(fake.content_policy(code))
    with pytest.raises(ContentRefused) as raised:
        generate(provider(fake, retries=2))
    assert raised.value.info.reason == "CONTENT_POLICY_VIOLATION"
    assert "content policy" in raised.value.message
    assert len(fake.requests) == 1


def test_server_errors_are_retried_then_unavailable(fake) -> None:
    fake.script(fake.server_error(500), fake.server_error(503))
    with pytest.raises(Unavailable) as raised:
        generate(provider(fake, retries=1))
    assert raised.value.info.reason == "PROVIDER_UNAVAILABLE"
    assert len(fake.requests) == 2


def test_a_slow_answer_is_deadline_exceeded(fake) -> None:
    fake.script(fake.slow(5))
    with pytest.raises(DeadlineExceeded) as raised:
        generate(provider(fake, retries=0, timeout=0.3))
    assert raised.value.info.reason == "PROVIDER_TIMEOUT"


def test_an_unreachable_provider_is_unavailable(fake) -> None:
    openai = OpenAIProvider(
        api_key="sk-test", base_url=fake.base_url, timeout_seconds=2, max_retries=0
    )
    fake.stop()
    with pytest.raises(Unavailable) as raised:
        generate(openai)
    assert raised.value.info.reason == "PROVIDER_UNAVAILABLE"


def test_a_rejected_key_is_unavailable_not_the_callers_fault(fake) -> None:
    fake.script(
        Scripted(401, {"error": {"message": "Incorrect API key", "type": "invalid_request_error"}})
    )
    with pytest.raises(Unavailable) as raised:
        generate(provider(fake))
    assert raised.value.info.reason == "PROVIDER_REJECTED"
    assert len(fake.requests) == 1


# ---- ImageService end to end -----------------------------------------------------


@pytest.fixture
def openai_pair(database_url, authenticator, clock, fake):  # type: ignore[no-untyped-def]
    with running_openai_pair(
        database_url,
        authenticator,
        fake,
        clock=clock,
        openai_max_retries=2,
        openai_timeout_seconds=0.5,
    ) as pair:
        yield pair


def test_generated_through_openai_stores_the_bytes_and_charges_the_reported_usage(
    openai_pair, fake, tokens, prices
) -> None:
    pair = openai_pair
    reply = pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))

    usage = TokenUsage(**DEFAULT_USAGE)
    cost = prices.model(DEFAULT_MODEL).actual_cost_micros("medium", "1024x1024", usage)
    assert reply.source == pb.IMAGE_SOURCE_GENERATED
    assert reply.cost_micros == cost
    [request] = fake.requests
    assert request.body["prompt"] == reply.prompt
    stored = pair.image.GetImage(
        pb.GetImageRequest(image_id=reply.image.image_id), metadata=tokens.user("u1")
    )
    assert stored.data == image_for(reply.prompt)
    assert hashlib.sha256(stored.data).hexdigest() == reply.image.image_id

    [record] = ledger(pair)
    assert (record.outcome, record.provider, record.cost_micros) == ("generated", "openai", cost)
    assert (record.input_tokens, record.output_tokens) == (57, 439)
    assert user_daily(pair, tokens).spent_micros == cost


def assert_released_with_a_failed_record(pair, tokens, reason: str) -> None:  # type: ignore[no-untyped-def]
    assert reservation_states(pair) == ["released"]
    [record] = ledger(pair)
    assert (record.outcome, record.success, record.cost_micros) == ("failed", False, 0)
    assert reason in record.error_message
    daily = user_daily(pair, tokens)
    assert (daily.spent_micros, daily.reserved_micros) == (0, 0)


def test_a_persistent_rate_limit_is_retried_then_resource_exhausted_and_released(
    openai_pair, fake, tokens
) -> None:
    fake.script(*[fake.rate_limited(retry_after="0.01")] * 3)
    error, details = refusal(
        lambda: openai_pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details["ErrorInfo"].reason == "PROVIDER_RATE_LIMITED"
    assert details["QuotaFailure"].violations[0].subject == "provider:openai"
    assert details["RetryInfo"].retry_delay.seconds >= 1
    assert len(fake.requests) == 3
    assert_released_with_a_failed_record(openai_pair, tokens, "PROVIDER_RATE_LIMITED")


def test_a_server_error_is_unavailable_and_released(openai_pair, fake, tokens) -> None:
    fake.script(*[fake.server_error(retry_after="0.01")] * 3)
    error, details = refusal(
        lambda: openai_pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    )
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert details["ErrorInfo"].reason == "PROVIDER_UNAVAILABLE"
    assert len(fake.requests) == 3
    assert_released_with_a_failed_record(openai_pair, tokens, "PROVIDER_UNAVAILABLE")


def test_a_content_policy_refusal_is_invalid_argument_and_not_retried(
    openai_pair, fake, tokens
) -> None:
    fake.script(fake.content_policy())
    error, details = refusal(
        lambda: openai_pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details["ErrorInfo"].reason == "CONTENT_POLICY_VIOLATION"
    assert dict(details["ErrorInfo"].metadata) == {"provider_code": "moderation_blocked"}
    assert "content policy" in error.details()
    assert len(fake.requests) == 1
    assert_released_with_a_failed_record(openai_pair, tokens, "CONTENT_POLICY_VIOLATION")


def test_a_timeout_is_deadline_exceeded_and_released(
    database_url, authenticator, clock, fake, tokens
) -> None:
    fake.script(fake.slow(5))
    with running_openai_pair(
        database_url,
        authenticator,
        fake,
        clock=clock,
        openai_max_retries=0,
        openai_timeout_seconds=0.3,
    ) as pair:
        error, details = refusal(
            lambda: pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        )
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert details["ErrorInfo"].reason == "PROVIDER_TIMEOUT"
        assert_released_with_a_failed_record(pair, tokens, "PROVIDER_TIMEOUT")


def test_a_retry_of_a_failed_request_id_is_refused(openai_pair, fake, tokens) -> None:
    fake.script(fake.content_policy())
    request = generate_request(request_id="attempt-1")
    refusal(lambda: openai_pair.image.GenerateImage(request, metadata=tokens.user("u1")))

    error, details = refusal(
        lambda: openai_pair.image.GenerateImage(request, metadata=tokens.user("u1"))
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details["ErrorInfo"].reason == "REQUEST_ALREADY_FAILED"
    assert "new request_id" in error.details()
    assert len(fake.requests) == 1
    assert len(ledger(openai_pair)) == 1


def test_an_exhausted_provider_quota_is_not_retried_and_is_released(
    openai_pair, fake, tokens
) -> None:
    fake.script(fake.insufficient_quota(), fake.insufficient_quota())
    error, details = refusal(
        lambda: openai_pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details["ErrorInfo"].reason == "PROVIDER_QUOTA_EXHAUSTED"
    assert details["QuotaFailure"].violations[0].subject == "provider:openai"
    assert details["RetryInfo"].retry_delay.seconds == 3600
    assert len(fake.requests) == 1
    assert_released_with_a_failed_record(openai_pair, tokens, "PROVIDER_QUOTA_EXHAUSTED")


def test_a_rate_limit_is_retried_after_the_servers_retry_after(openai_pair, fake, tokens) -> None:
    fake.script(fake.rate_limited(retry_after="0.4"))
    reply = openai_pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    assert reply.source == pb.IMAGE_SOURCE_GENERATED
    first, second = fake.requests
    assert second.at - first.at >= 0.4
    assert [r.outcome for r in ledger(openai_pair)] == ["generated"]


def test_the_reservation_holds_at_least_what_the_reported_usage_costs(
    openai_pair, fake, tokens, prices
) -> None:
    heavy = {**DEFAULT_USAGE, "input_text_tokens": 120}
    fake.script(fake.success(usage=heavy))
    reply = openai_pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    with openai_pair.budget.app.sessions.begin() as session:
        from sqlalchemy import select

        from services.budget.store.models import ReservationRow

        [reservation] = session.scalars(select(ReservationRow)).all()
        assert reservation.committed_micros == reply.cost_micros
        assert reservation.amount_micros >= reply.cost_micros
    expected = prices.model(DEFAULT_MODEL).actual_cost_micros(
        "medium", "1024x1024", TokenUsage(**heavy)
    )
    assert reply.cost_micros == expected


# ---- the fallback image ----------------------------------------------------------------


@pytest.fixture
def fallback_png(tmp_path):  # type: ignore[no-untyped-def]
    from services.image.adapters.providers.offline import placeholder_png

    path = tmp_path / "fallback.png"
    path.write_bytes(placeholder_png(b"\x10" * 32, 8, 8))
    return path


@pytest.fixture
def fallback_pair(database_url, authenticator, clock, fake, fallback_png):  # type: ignore[no-untyped-def]
    with running_openai_pair(
        database_url,
        authenticator,
        fake,
        clock=clock,
        openai_max_retries=0,
        fallback_image=fallback_png,
    ) as pair:
        yield pair


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("content_policy", "CONTENT_POLICY_VIOLATION"),
        ("server_error", "PROVIDER_UNAVAILABLE"),
        ("rate_limited", "PROVIDER_RATE_LIMITED"),
        ("insufficient_quota", "PROVIDER_QUOTA_EXHAUSTED"),
    ],
)
def test_with_a_fallback_a_provider_failure_serves_it_uncharged(
    fallback_pair, fake, tokens, fallback_png, answer, reason
) -> None:
    fake.script(getattr(fake, answer)())
    reply = fallback_pair.image.GenerateImage(
        generate_request(request_id="fb-1"), metadata=tokens.user("u1")
    )
    assert reply.source == pb.IMAGE_SOURCE_FALLBACK
    assert reply.fallback_used is True
    assert (reply.cost_micros, reply.cost_saved_micros) == (0, 0)
    assert reply.fallback_reason == reason
    assert reply.fallback_message
    assert reply.image.image_id == hashlib.sha256(fallback_png.read_bytes()).hexdigest()
    stored = fallback_pair.image.GetImage(
        pb.GetImageRequest(image_id=reply.image.image_id), metadata=tokens.user("u1")
    )
    assert stored.data == fallback_png.read_bytes()

    assert reservation_states(fallback_pair) == ["released"]
    [record] = ledger(fallback_pair)
    assert (record.request_id, record.outcome, record.fallback_used) == ("fb-1", "fallback", True)
    assert (record.cost_micros, record.success) == (0, False)
    assert reason in record.error_message
    daily = user_daily(fallback_pair, tokens)
    assert (daily.spent_micros, daily.reserved_micros) == (0, 0)

    # The fallback is never cached: the next request asks the provider again.
    again = fallback_pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
    assert again.source == pb.IMAGE_SOURCE_GENERATED
    assert len(fake.requests) == 2


def test_a_budget_refusal_is_not_answered_with_the_fallback(
    database_url, authenticator, clock, fake, fallback_png, tokens
) -> None:
    from services.budget.domain.limits import TierLimits
    from tests.support.budget_server import tiers

    tiny = tiers(free=TierLimits(daily_micros=1, monthly_micros=10**9, per_generation_micros=1))
    with running_openai_pair(
        database_url,
        authenticator,
        fake,
        clock=clock,
        fallback_image=fallback_png,
        budget_overrides={"tiers": tiny},
    ) as pair:
        error, _ = refusal(
            lambda: pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        )
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert fake.requests == []


def test_the_provider_sees_a_stable_salted_end_user_id_never_the_raw_one(
    openai_pair, fake, tokens
) -> None:
    pair = openai_pair
    pair.image.GenerateImage(generate_request(), metadata=tokens.user("alice@example.com"))
    pair.image.GenerateImage(
        generate_request(recipe=CAKE), metadata=tokens.user("alice@example.com")
    )
    beans = pb.Recipe(title="Baked beans", ingredients=["white beans", "tomato"])
    pair.image.GenerateImage(generate_request(recipe=beans), metadata=tokens.user("bob"))
    alice_1, alice_2, bob = (request.body.get("user") for request in fake.requests)
    assert alice_1 == alice_2 and alice_1 != bob
    assert alice_1 and "alice" not in alice_1 and "example" not in alice_1
    assert alice_1 == end_user_id(TEST_END_USER_SALT, "alice@example.com")
