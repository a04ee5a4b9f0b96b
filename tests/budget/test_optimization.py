"""AnalyzeCostOptimization over gRPC on SQLite and PostgreSQL: a ledger built
by hand where every figure is known, the system scope, "nothing to save",
access and bad input."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import optimization_pb2 as opb

from services.budget.domain.usage import Outcome, Usage
from services.budget.store.unit_of_work import BudgetStore
from services.common.status import rich_details
from tests.budget.conftest import T0

_ids = itertools.count(1)
D1, D2, D4 = ("d1" * 32, "d2" * 32, "d4" * 32)
I1, I2, I3, I4, I5 = (f"{n}" * 64 for n in "12345")


def put(budget, user_id: str, at: datetime, outcome: Outcome, **fields) -> None:  # type: ignore[no-untyped-def]
    """A ledger record written by the real store (its triggers keep the rollup)."""
    values = {
        "model": "gpt-image-2",
        "size": "1024x1024",
        "quality": "medium",
        "provider": "offline",
        "success": outcome.served_image,
        "cached": outcome.cache_hit != "",
        "cache_hit": outcome.cache_hit,
        "input_tokens": 30 if outcome is Outcome.GENERATED else 0,
        **fields,
    }
    usage = Usage(
        request_id=f"req-{next(_ids)}", user_id=user_id, outcome=outcome, created_at=at, **values
    )
    with BudgetStore(budget.app.sessions).transaction() as tx:
        assert tx.usage.store_usage(usage)


def build_ledger(budget) -> None:  # type: ignore[no-untyped-def]
    """u1's month (see the module's figures), u7's hit of u1's image, and u9's
    generation of dish D2 before the range."""
    gen = Outcome.GENERATED
    put(
        budget,
        "u9",
        datetime(2026, 2, 1, 10, tzinfo=UTC),
        gen,
        recipe_id="x",
        dish_key=D2,
        quality="low",
        cost_micros=6_000,
    )
    # Whole days (the rollup) and both partial days at the range's edges (the ledger).
    put(
        budget,
        "u1",
        datetime(2026, 2, 8, 18, tzinfo=UTC),
        gen,
        recipe_id="r2",
        dish_key=D2,
        cost_micros=53_000,
        image_id=I3,
    )
    put(
        budget,
        "u1",
        datetime(2026, 3, 1, 10, tzinfo=UTC),
        gen,
        recipe_id="r1",
        dish_key=D1,
        quality="high",
        cost_micros=211_000,
        similar_allowed=True,
        image_id=I1,
    )
    put(
        budget,
        "u7",
        datetime(2026, 3, 2, 10, tzinfo=UTC),
        Outcome.CACHE_HIT_EXACT,
        recipe_id="q",
        image_id=I1,
        cost_saved_micros=211_000,
    )
    put(
        budget,
        "u1",
        datetime(2026, 3, 5, 10, tzinfo=UTC),
        gen,
        recipe_id="r3",
        size="1024x1536",
        quality="low",
        custom_prompt=True,
        input_tokens=130,
        cost_micros=5_650,
        image_id=I4,
    )
    put(
        budget,
        "u1",
        datetime(2026, 3, 6, 10, tzinfo=UTC),
        Outcome.CACHE_HIT_SIMILAR,
        recipe_id="r5",
        image_id=I3,
        cost_saved_micros=53_000,
    )
    put(budget, "u1", datetime(2026, 3, 7, 10, tzinfo=UTC), Outcome.FAILED, recipe_id="r4")
    put(
        budget,
        "u1",
        datetime(2026, 3, 7, 10, 1, tzinfo=UTC),
        gen,
        recipe_id="r4",
        dish_key=D4,
        size="1024x1536",
        quality="low",
        cost_micros=5_000,
        similar_allowed=True,
        image_id=I5,
    )
    put(
        budget,
        "u1",
        datetime(2026, 3, 10, 9, tzinfo=UTC),
        gen,
        recipe_id="r1",
        dish_key=D1,
        quality="high",
        cost_micros=211_000,
        image_id=I2,
    )


def analyze(budget, metadata, **fields) -> opb.AnalyzeCostOptimizationResponse:  # type: ignore[no-untyped-def]
    return budget.stub.AnalyzeCostOptimization(
        opb.AnalyzeCostOptimizationRequest(**fields), metadata=metadata
    )


def settings_of(response) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [
        (
            s.kind,
            s.current_setting,
            s.suggested_setting,
            s.records,
            s.current_cost_micros,
            s.suggested_cost_micros,
            s.savings_micros,
            s.impact,
        )
        for s in response.suggestions
    ]


K = opb
HIGH, MEDIUM, LOW = K.IMPACT_LEVEL_HIGH, K.IMPACT_LEVEL_MEDIUM, K.IMPACT_LEVEL_LOW


def test_every_figure_of_a_hand_built_month(budget, tokens) -> None:
    build_ledger(budget)
    response = analyze(budget, tokens.user("u1"))

    assert response.user_id == "u1"
    assert response.scope == K.OPTIMIZATION_SCOPE_USER
    assert response.start_time.ToDatetime(tzinfo=UTC) == T0 - timedelta(days=30)
    assert response.end_time.ToDatetime(tzinfo=UTC) == T0
    assert (response.total_cost_micros, response.generated_images) == (485_650, 5)
    # Spend 485,650: HIGH from 97,130 (20%), MEDIUM from 24,283 (5%).
    assert settings_of(response) == [
        (
            K.SUGGESTION_KIND_MODEL,
            "model gpt-image-2",
            "model gpt-image-2.6-sunburst",
            2,
            422_000,
            105_360,
            316_640,
            HIGH,
        ),
        (
            K.SUGGESTION_KIND_QUALITY,
            "quality high",
            "quality medium",
            2,
            422_000,
            106_000,
            316_000,
            HIGH,
        ),
        (
            K.SUGGESTION_KIND_CACHING,
            "generate",
            "serve from the cache",
            1,
            211_000,
            0,
            211_000,
            HIGH,
        ),
        (
            K.SUGGESTION_KIND_SIZE,
            "size 1024x1024",
            "size 1024x1536",
            3,
            475_000,
            371_000,
            104_000,
            HIGH,
        ),
        (
            K.SUGGESTION_KIND_QUALITY,
            "quality medium",
            "quality low",
            1,
            53_000,
            6_000,
            47_000,
            MEDIUM,
        ),
        (
            K.SUGGESTION_KIND_MODEL,
            "model gpt-image-2",
            "model gpt-image-2.5-sunburst",
            3,
            63_650,
            23_300,
            40_350,
            MEDIUM,
        ),
        (
            K.SUGGESTION_KIND_PROMPT,
            "custom prompts, 130 tokens an image",
            "built prompts, 30 tokens an image",
            1,
            5_650,
            5_150,
            500,
            LOW,
        ),
    ]
    assert response.suggestions[1].description == (
        "2 high-quality images cost 0.4220 USD; the same at medium would have cost 0.1060 USD."
    )
    # A 30-day range: the monthly estimate is the range's savings.
    assert response.suggestions[0].estimated_monthly_savings_micros == 316_640
    assert response.recommended_spend_micros == 485_650 - 316_640
    assert response.efficiency_score_percent == 34
    assert response.estimated_monthly_savings_micros == 316_640
    assert len(response.recommended_actions) == 7 + 3  # suggestions, then waste

    caching = response.caching
    # r1's second generation: allow_similar off, dish D1 generated before at
    # high; D2 was generated before only at low, so r2 (medium) is not counted.
    assert (caching.similar_off_dish_cached, caching.similar_off_dish_cached_cost_micros) == (
        1,
        211_000,
    )
    assert (caching.repeated_recipes, caching.repeated_generations) == (1, 1)
    assert caching.repeated_generation_cost_micros == 211_000
    assert (caching.cache_hits, caching.generations) == (1, 5)
    assert caching.hit_rate_basis_points == 1_666  # 1 of 6
    assert caching.system_hit_rate_basis_points == 2_857  # 2 of 7

    (prompt,) = response.prompt_efficiency
    assert (prompt.model, prompt.custom_prompt_images, prompt.custom_prompt_input_tokens) == (
        "gpt-image-2",
        1,
        130,
    )
    assert (prompt.built_prompt_images, prompt.built_prompt_input_tokens) == (4, 120)
    assert (prompt.custom_tokens_per_image, prompt.built_tokens_per_image) == (130, 30)
    assert prompt.excess_cost_micros == 500  # 100 tokens at 5 USD per 1M

    waste = response.waste
    # I1 (served to u7) and I3 (served to u1) were used again; I2, I4, I5 not.
    assert (waste.unserved_generations, waste.unserved_cost_micros) == (3, 221_650)
    assert (waste.failures_after_reservation, waste.failure_cost_micros) == (1, 0)
    assert (waste.retries, waste.retry_cost_micros) == (1, 5_000)


def test_the_breakdown_is_get_usage_stats_own(budget, tokens) -> None:
    build_ledger(budget)
    response = analyze(budget, tokens.user("u1"))
    stats = budget.stub.GetUsageStats(
        pb.GetUsageStatsRequest(
            period=pb.STATS_PERIOD_RANGE,
            start_time=response.start_time,
            end_time=response.end_time,
        ),
        metadata=tokens.user("u1"),
    )
    fields = (
        "model",
        "size",
        "quality",
        "generations",
        "successful_generations",
        "cost_micros",
        "cache_hits",
        "cost_saved_micros",
    )
    assert [tuple(getattr(r, f) for f in fields) for r in response.breakdown] == [
        tuple(getattr(r, f) for f in fields) for r in stats.breakdown
    ]
    assert [(o.outcome, o.count, o.cost_micros) for o in response.outcomes] == [
        (pb.UsageOutcome.Name(o.outcome), o.count, o.cost_micros) for o in stats.outcomes
    ]
    assert sum(r.cost_micros for r in response.breakdown) == 485_650


def test_an_admin_analyzes_the_whole_system(budget, tokens) -> None:
    build_ledger(budget)
    response = analyze(budget, tokens.admin(), scope=K.OPTIMIZATION_SCOPE_SYSTEM)
    assert (response.user_id, response.scope) == ("", K.OPTIMIZATION_SCOPE_SYSTEM)
    # u7's hit costs nothing; u9's generation is before the range.
    assert (response.total_cost_micros, response.generated_images) == (485_650, 5)
    assert (response.caching.cache_hits, response.caching.generations) == (2, 5)
    assert response.caching.hit_rate_basis_points == 2_857
    assert response.waste.unserved_generations == 3
    assert response.suggestions[0].savings_micros == 316_640

    for_u7 = analyze(budget, tokens.admin(), user_id="u7")
    assert (for_u7.total_cost_micros, for_u7.suggestions) == (0, [])
    assert for_u7.caching.hit_rate_basis_points == 10_000


def test_a_range_given_narrows_every_figure(budget, tokens) -> None:
    build_ledger(budget)
    start, end = Timestamp(), Timestamp()
    start.FromDatetime(datetime(2026, 3, 5, tzinfo=UTC))
    end.FromDatetime(datetime(2026, 3, 8, tzinfo=UTC))
    response = analyze(budget, tokens.user("u1"), start_time=start, end_time=end)
    # r3 (custom prompt, 5,650) and r4's retry (5,000); the failure.
    assert (response.total_cost_micros, response.generated_images) == (10_650, 2)
    assert [(s.kind, s.savings_micros) for s in response.suggestions] == [
        (K.SUGGESTION_KIND_MODEL, 520),
        (K.SUGGESTION_KIND_PROMPT, 500),
    ]
    # 3 days scaled to 30.
    assert response.estimated_monthly_savings_micros == 5_200
    assert response.waste.retries == 1


def test_nothing_to_save_gives_no_suggestion(budget, tokens) -> None:
    put(
        budget,
        "u2",
        T0 - timedelta(days=2),
        Outcome.GENERATED,
        recipe_id="a",
        model="gpt-image-2.5-sunburst",
        size="1024x1536",
        quality="low",
        cost_micros=4_740,
        image_id=I1,
    )
    put(budget, "u3", T0 - timedelta(days=1), Outcome.CACHE_HIT_EXACT, image_id=I1)
    response = analyze(budget, tokens.user("u2"))
    assert response.total_cost_micros == 4_740
    assert list(response.suggestions) == []
    assert list(response.recommended_actions) == []
    assert response.efficiency_score_percent == 100
    assert response.recommended_spend_micros == 4_740
    assert response.waste.unserved_generations == 0

    empty = analyze(budget, tokens.user("nobody"))
    assert (empty.total_cost_micros, list(empty.suggestions)) == (0, [])
    assert empty.efficiency_score_percent == 100


def test_a_service_analyzes_the_user_it_names(budget, tokens) -> None:
    build_ledger(budget)
    response = analyze(budget, tokens.service(), user_id="u1")
    assert response.total_cost_micros == 485_650


def _refused(call) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def _fields(error: grpc.RpcError) -> list[str]:
    bad = next(d for d in rich_details(error) if d.DESCRIPTOR.name == "BadRequest")
    return [v.field for v in bad.field_violations]


def test_a_user_analyzes_only_itself(budget, tokens) -> None:
    system = K.OPTIMIZATION_SCOPE_SYSTEM
    for metadata, fields in [
        (tokens.user("u1"), {"user_id": "u2"}),
        (tokens.user("u1"), {"scope": system}),
        (tokens.service(), {"scope": system}),
        ((), {}),
    ]:
        error = _refused(lambda m=metadata, f=fields: analyze(budget, m, **f))
        expected = (
            grpc.StatusCode.UNAUTHENTICATED if not metadata else grpc.StatusCode.PERMISSION_DENIED
        )
        assert error.code() == expected


def test_bad_input_is_refused_with_the_fields(budget, tokens) -> None:
    later, earlier = Timestamp(), Timestamp()
    later.FromDatetime(T0)
    earlier.FromDatetime(T0 - timedelta(days=400))
    for metadata, fields, expected in [
        (tokens.admin(), {}, ["user_id"]),
        (tokens.admin(), {"user_id": "u1", "scope": K.OPTIMIZATION_SCOPE_SYSTEM}, ["user_id"]),
        (tokens.user("u1"), {"start_time": later, "end_time": later}, ["end_time"]),
        (tokens.user("u1"), {"start_time": earlier, "end_time": later}, ["end_time"]),
        (tokens.user("u1"), {"start_time": later}, ["end_time"]),  # starts now: empty
    ]:
        error = _refused(lambda m=metadata, f=fields: analyze(budget, m, **f))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _fields(error) == expected


def test_the_usage_context_is_stored_and_checked(budget, tokens) -> None:
    def record(**fields):  # type: ignore[no-untyped-def]
        return budget.stub.RecordUsage(
            pb.RecordUsageRequest(
                usage=pb.UsageRecord(
                    request_id=f"req-{next(_ids)}",
                    user_id="u1",
                    outcome=pb.USAGE_OUTCOME_CACHE_HIT_SIMILAR,
                    **fields,
                )
            ),
            metadata=tokens.service(),
        )

    stored = record(dish_key=D1, similar_allowed=True, image_id=I1).usage
    assert (stored.dish_key, stored.similar_allowed, stored.image_id) == (D1, True, I1)
    assert not stored.custom_prompt
    for field, value in [("dish_key", "broccoli soup"), ("image_id", "AB" * 32)]:
        error = _refused(lambda f=field, v=value: record(**{f: v}))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _fields(error) == [f"usage.{field}"]
