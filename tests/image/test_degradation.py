"""Budget-aware degradation (issue 11): a request that says what it accepts is
served a lower quality, a smaller size or a cached image when the one it asks
for does not fit, and says so; the quote chooses the same; off unless asked;
nothing accepted fits: the normal refusal; and spend never exceeds a limit,
under concurrency too."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import degradation_pb2 as dpb
from recipeimage.image.v1 import image_service_pb2 as pb

from services.image.domain.degradation import (
    Action,
    Choice,
    DegradationPolicy,
    Option,
    Room,
    Setting,
    Step,
    choose,
    steps,
)
from tests.image.conftest import (
    HIGH,
    LOW,
    MEDIUM,
    SOUP,
    generate_request,
    ledger,
    per_image,
    refusal,
    user_daily,
)
from tests.image.test_quote import (
    MAC_A,
    MAC_B,
    assert_quote_refused,
    assert_quote_served,
    quote,
    quote_then_generate,
    set_limits,
)

# A model whose smaller size is the cheaper one (and offered on T0).
MINI = "gpt-image-1-mini"
# Below a high image's hold (52,680 + the prompt's tokens), above a medium one's.
PER_GENERATION = 20_000


def degrading(recipe: pb.Recipe = SOUP, **fields: object) -> pb.GenerateImageRequest:
    policy = fields.pop("policy", dpb.DegradationPolicy(lower_quality=True))
    return pb.GenerateImageRequest(recipe=recipe, degradation=policy, **fields)  # type: ignore[arg-type]


def test_a_lower_quality_is_served_when_the_requested_one_is_over_the_limit(
    pair, tokens, prices
) -> None:
    set_limits(pair, tokens, per_generation_micros=PER_GENERATION)
    quoted, served, error = quote_then_generate(pair, tokens, degrading(quality=HIGH))
    assert error is None
    assert_quote_served(quoted, served)
    assert served.source == pb.IMAGE_SOURCE_GENERATED
    assert (served.quality, served.cost_micros) == (MEDIUM, per_image(prices, "medium"))
    assert served.degradation.requested_quality == HIGH
    assert served.degradation.served_quality == MEDIUM
    assert served.degradation.requested_size == served.degradation.served_size == "1024x1024"
    assert served.degradation.reason == "PER_GENERATION_LIMIT_EXCEEDED"
    assert "high 1024x1024" in served.degradation.message
    [record] = ledger(pair)
    assert (record.outcome, record.quality, record.cost_micros) == (
        "generated",
        "medium",
        served.cost_micros,
    )


def test_the_callers_order_of_qualities_is_followed(pair, tokens, prices) -> None:
    set_limits(pair, tokens, per_generation_micros=PER_GENERATION)
    policy = dpb.DegradationPolicy(qualities=[LOW])  # medium would fit: not accepted
    quoted, served, _ = quote_then_generate(pair, tokens, degrading(quality=HIGH, policy=policy))
    assert_quote_served(quoted, served)
    assert (served.quality, served.cost_micros) == (LOW, per_image(prices, "low"))


def test_a_smaller_size_is_served_when_the_requested_one_is_over_the_daily_limit(
    pair, tokens, prices
) -> None:
    mini = prices.model(MINI)
    set_limits(pair, tokens, daily_micros=45_000)  # a high 1024x1536 is 52,000
    policy = dpb.DegradationPolicy(smaller_size=True)
    request = degrading(quality=HIGH, size="1024x1536", model=MINI, policy=policy)
    quoted, served, error = quote_then_generate(pair, tokens, request)
    assert error is None
    assert_quote_served(quoted, served)
    assert (served.size, served.quality) == ("1024x1024", HIGH)
    assert served.cost_micros == mini.per_image_micros("high", "1024x1024")
    assert served.degradation.reason == "DAILY_LIMIT_EXCEEDED"
    assert (served.degradation.requested_size, served.degradation.served_size) == (
        "1024x1536",
        "1024x1024",
    )
    assert user_daily(pair, tokens).spent_micros == served.cost_micros <= 45_000


def test_cached_only_serves_the_same_dish_from_the_cache_and_never_generates(pair, tokens) -> None:
    first = pair.image.GenerateImage(
        pb.GenerateImageRequest(recipe=MAC_A), metadata=tokens.user("u2")
    )
    set_limits(pair, tokens, daily_micros=1_000)
    policy = dpb.DegradationPolicy(cached_only=True)
    quoted, served, error = quote_then_generate(pair, tokens, degrading(MAC_B, policy=policy))
    assert error is None
    assert_quote_served(quoted, served)
    assert served.source == pb.IMAGE_SOURCE_CACHE_SIMILAR and served.cost_micros == 0
    assert served.image.image_id == first.image.image_id
    assert served.degradation.reason == "DAILY_LIMIT_EXCEEDED"
    assert served.degradation.served_quality == served.degradation.requested_quality

    # Nothing of the dish cached: the normal refusal, nothing generated lower.
    other = degrading(
        SOUP, quality=HIGH, policy=dpb.DegradationPolicy(cached_only=True, lower_quality=True)
    )
    quoted, served, error = quote_then_generate(pair, tokens, other)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_quote_refused(quoted, error)
    assert [r.outcome for r in ledger(pair)] == ["generated", "cache_hit_similar", "refused"]


def test_a_cached_lower_quality_is_served_at_that_quality(pair, tokens) -> None:
    low = pair.image.GenerateImage(generate_request(quality=LOW), metadata=tokens.user("u2"))
    set_limits(pair, tokens, daily_micros=1_000)
    policy = dpb.DegradationPolicy(lower_quality=True, cached_only=True)
    quoted, served, _ = quote_then_generate(pair, tokens, degrading(quality=HIGH, policy=policy))
    assert_quote_served(quoted, served)
    assert (served.source, served.image.image_id) == (
        pb.IMAGE_SOURCE_CACHE_EXACT,
        low.image.image_id,
    )
    assert (served.quality, served.degradation.served_quality) == (LOW, LOW)


def test_nothing_that_fits_gets_the_normal_refusal(pair, tokens) -> None:
    set_limits(pair, tokens, daily_micros=1_000)
    quoted, served, error = quote_then_generate(pair, tokens, degrading(quality=HIGH))
    assert served is None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = assert_quote_refused(quoted, error)
    assert details["ErrorInfo"].reason == "DAILY_LIMIT_EXCEEDED"  # type: ignore[attr-defined]
    # Refused for the requested image: its own reservation, its own record.
    assert details["ErrorInfo"].metadata["requested_micros"] == str(  # type: ignore[attr-defined]
        quote(pair, generate_request(quality=HIGH), tokens.user("u1")).max_cost_micros
    )
    [record] = ledger(pair)
    assert (record.outcome, record.quality) == ("refused", "high")


@pytest.mark.parametrize("policy", [None, dpb.DegradationPolicy()])
def test_degradation_is_off_unless_asked(pair, tokens, policy) -> None:
    set_limits(pair, tokens, per_generation_micros=PER_GENERATION)
    request = generate_request(quality=HIGH)
    if policy is not None:
        request.degradation.CopyFrom(policy)
    quoted, served, error = quote_then_generate(pair, tokens, request)
    assert served is None
    assert_quote_refused(quoted, error)
    assert quoted.refusal.reason == "PER_GENERATION_LIMIT_EXCEEDED"
    assert not quoted.HasField("degradation")


def test_a_request_that_fits_is_served_as_asked(pair, tokens, prices) -> None:
    quoted, served, _ = quote_then_generate(pair, tokens, degrading(quality=HIGH))
    assert_quote_served(quoted, served)
    assert served.quality == HIGH and not served.HasField("degradation")
    assert served.cost_micros == per_image(prices, "high")


def test_accepted_settings_must_be_offered_and_below_the_request(pair, tokens) -> None:
    policy = dpb.DegradationPolicy(qualities=[HIGH, LOW, LOW], sizes=["9x9", "1024x1536"])
    error, details = refusal(
        lambda: pair.image.GenerateImage(
            degrading(quality=MEDIUM, policy=policy), metadata=tokens.user("u1")
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [v.field for v in details["BadRequest"].field_violations]  # type: ignore[attr-defined]
    assert fields == [
        "degradation.qualities[0]",
        "degradation.qualities[2]",
        "degradation.sizes[0]",
        "degradation.sizes[1]",
    ]
    assert ledger(pair) == []


def test_degraded_spend_never_exceeds_the_limit_under_concurrency(pair, tokens) -> None:
    limit = 130_000  # two high images, or one and a few medium and low ones
    set_limits(pair, tokens, daily_micros=limit)
    dishes = (
        "Tomato Soup",
        "Lentil Stew",
        "Banana Bread",
        "Caesar Salad",
        "Beef Tacos",
        "Apple Pie",
        "Pancakes",
        "Fried Rice",
        "Chicken Curry",
        "Mushroom Risotto",
        "Lemon Tart",
        "Pea Soup",
    )
    recipes = [pb.Recipe(recipe_id=f"r{n}", title=title) for n, title in enumerate(dishes)]

    def generate(recipe: pb.Recipe) -> pb.GenerateImageResponse | grpc.RpcError:
        try:
            return pair.image.GenerateImage(
                degrading(recipe, quality=HIGH), metadata=tokens.user("u1")
            )
        except grpc.RpcError as error:
            return error

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(generate, recipes))
    served = [a for a in answers if isinstance(a, pb.GenerateImageResponse)]
    refused = [a for a in answers if isinstance(a, grpc.RpcError)]
    assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused)
    assert any(a.HasField("degradation") for a in served)
    daily = user_daily(pair, tokens)
    assert daily.spent_micros == sum(a.cost_micros for a in served) <= limit
    assert daily.reserved_micros == 0
    records = ledger(pair)
    assert len(records) == len(recipes)  # exactly one record an attempt
    reconciliation = pair.budget.stub.ReconcileLedger(
        budget_pb.ReconcileLedgerRequest(), metadata=tokens.admin()
    )
    assert reconciliation.consistent, reconciliation.differences


# ---- the rules alone ------------------------------------------------------------------

OFFERED_QUALITIES = ("low", "medium", "high")
OFFERED_SIZES = ("1024x1024", "1024x1536", "1536x1024")


def test_the_steps_go_down_in_quality_first_then_in_size() -> None:
    policy = DegradationPolicy(lower_quality=True, smaller_size=True)
    found = steps(
        policy,
        Setting("high", "1024x1536"),
        OFFERED_QUALITIES,
        OFFERED_SIZES,
        allow_similar=False,
        built_prompt=True,
    )
    assert [(s.setting.quality, s.setting.size) for s in found] == [
        ("high", "1024x1536"),
        ("medium", "1024x1536"),
        ("low", "1024x1536"),
        ("high", "1024x1024"),
        ("medium", "1024x1024"),
        ("low", "1024x1024"),
    ]
    assert all(s.may_generate and not s.similar for s in found)
    no_policy = steps(
        DegradationPolicy(),
        Setting("high", "1024x1536"),
        OFFERED_QUALITIES,
        OFFERED_SIZES,
        allow_similar=True,
        built_prompt=True,
    )
    assert [(s.setting, s.similar) for s in no_policy] == [(Setting("high", "1024x1536"), True)]


def test_cached_only_looks_for_the_same_dish_and_never_generates_lower() -> None:
    requested = Setting("medium", "1024x1024")
    found = steps(
        DegradationPolicy(cached_only=True, qualities=("low",)),
        requested,
        OFFERED_QUALITIES,
        OFFERED_SIZES,
        allow_similar=False,
        built_prompt=True,
    )
    assert [(s.setting, s.similar, s.may_generate) for s in found] == [
        (requested, False, True),
        (requested, True, False),
        (Setting("low", "1024x1024"), True, False),
    ]
    # A caller's own prompt is never matched to another recipe's image.
    own_prompt = steps(
        DegradationPolicy(cached_only=True),
        requested,
        OFFERED_QUALITIES,
        OFFERED_SIZES,
        allow_similar=True,
        built_prompt=False,
    )
    assert [(s.setting, s.similar) for s in own_prompt] == [(requested, False)]


def test_the_choice_is_the_first_step_cached_or_fitting() -> None:
    def option(cost: int, *, cached: bool = False, may_generate: bool = True) -> Option:
        return Option(Step(Setting("high", "1024x1024"), False, may_generate), cost, cached)

    room = Room(per_generation_micros=50, remaining_micros=(100, 30))
    assert choose([option(40), option(20)], room) == Choice(Action.GENERATE, 1)
    assert choose([option(40), option(60, cached=True), option(20)], room) == Choice(
        Action.SERVE_CACHED, 1
    )
    assert choose([option(40), option(20, may_generate=False)], room) == Choice(Action.REFUSE, 0)
    assert choose([option(30), option(20)], room, start=1) == Choice(Action.GENERATE, 1)
    assert choose([option(31)], room) == Choice(Action.REFUSE, 0)
