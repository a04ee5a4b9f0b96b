"""Cost optimization's pure calculations, against figures computed by hand
from the shipped price table (services/common/price_table.json)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.budget.domain.optimization import (
    CachingFacts,
    Impact,
    OptimizationFacts,
    PromptGroup,
    Scope,
    SettingGroup,
    SuggestionKind,
    WasteFacts,
    analysis_range,
    analyze,
    impact_of,
    monthly,
    prompt_efficiency,
    usd,
)
from services.budget.domain.usage import Outcome, OutcomeRow, UsageSummary, UsageTotals
from services.budget.domain.validation import Violations
from services.common.errors import InvalidArgument
from services.common.prices import PriceTable, load_price_table

END = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NO_CACHING = CachingFacts()
START = END - timedelta(days=30)


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return load_price_table()


def facts(
    spend: int,
    settings: list[SettingGroup] = (),  # type: ignore[assignment]
    *,
    generated: int = 0,
    prompts: list[PromptGroup] = (),  # type: ignore[assignment]
    system_prompts: list[PromptGroup] = (),  # type: ignore[assignment]
    caching: CachingFacts = NO_CACHING,
    outcomes: list[OutcomeRow] | None = None,
    hits: int = 0,
) -> OptimizationFacts:
    rows = (
        outcomes if outcomes is not None else [OutcomeRow(Outcome.GENERATED, generated, spend, 0)]
    )
    summary = UsageSummary(
        UsageTotals(generations=generated + hits, cost_micros=spend, cache_hits=hits),
        UsageTotals(),
        [],
        rows,
    )
    return OptimizationFacts(
        summary, list(settings), list(prompts), list(system_prompts), caching, WasteFacts(), 0, 0
    )


def test_ten_high_quality_images_get_a_model_a_quality_and_a_size_suggestion(prices) -> None:
    # gpt-image-2 at 1024x1024: high 0.211000, medium 0.053000; at high the
    # cheapest size is 1024x1536 (0.165000); the cheapest active model with
    # high at 1024x1024 is gpt-image-2.6-sunburst (0.052680, first in the table).
    group = SettingGroup("gpt-image-2", "1024x1024", "high", 10, 2_110_000)
    result = analyze("u1", Scope.USER, START, END, facts(2_110_000, [group], generated=10), prices)

    by_kind = {s.kind: s for s in result.suggestions}
    assert [s.kind for s in result.suggestions] == [
        SuggestionKind.MODEL,
        SuggestionKind.QUALITY,
        SuggestionKind.SIZE,
    ]
    model = by_kind[SuggestionKind.MODEL]
    assert (model.current_setting, model.suggested_setting) == (
        "model gpt-image-2",
        "model gpt-image-2.6-sunburst",
    )
    assert (model.records, model.current_cost_micros, model.suggested_cost_micros) == (
        10,
        2_110_000,
        526_800,
    )
    quality = by_kind[SuggestionKind.QUALITY]
    assert (quality.suggested_setting, quality.savings_micros) == ("quality medium", 1_580_000)
    assert quality.description == (
        "10 high-quality images cost 2.11 USD; the same at medium would have cost 0.5300 USD."
    )
    size = by_kind[SuggestionKind.SIZE]
    assert (size.suggested_setting, size.savings_micros) == ("size 1024x1536", 460_000)
    # 460,000 of 2,110,000 is 21.8%: still HIGH.
    assert {s.impact for s in result.suggestions} == {Impact.HIGH}
    # Recommended: spend minus the largest savings (the model's).
    assert result.recommended_spend_micros == 526_800
    assert result.efficiency_score_percent == 24  # 526,800 / 2,110,000 = 24.97%
    assert result.monthly_savings_micros == 1_583_200  # a 30-day range
    assert result.actions[0].startswith(
        "Use model gpt-image-2.6-sunburst instead of gpt-image-2: saves 1.58 USD"
    )


def test_a_quality_step_with_the_same_price_is_skipped(prices) -> None:
    # gpt-image-2.6-sunburst: high and medium both 0.052680 at 1024x1024, low 0.023520.
    group = SettingGroup("gpt-image-2.6-sunburst", "1024x1024", "high", 3, 158_040)
    result = analyze("u1", Scope.USER, START, END, facts(158_040, [group], generated=3), prices)
    quality = next(s for s in result.suggestions if s.kind is SuggestionKind.QUALITY)
    assert quality.suggested_setting == "quality low"
    assert quality.savings_micros == 3 * (52_680 - 23_520)


def test_nothing_to_save_gives_no_suggestion_and_a_full_score(prices) -> None:
    # Low quality at 1024x1536 on gpt-image-2.5-sunburst (0.004740): no lower
    # quality, no cheaper size, no cheaper active model.
    group = SettingGroup("gpt-image-2.5-sunburst", "1024x1536", "low", 5, 23_700)
    result = analyze("u1", Scope.USER, START, END, facts(23_700, [group], generated=5), prices)
    assert result.suggestions == []
    assert result.efficiency_score_percent == 100
    assert result.recommended_spend_micros == 23_700
    assert result.monthly_savings_micros == 0
    assert result.actions == []


def test_no_spend_gives_a_full_score(prices) -> None:
    result = analyze("u1", Scope.USER, START, END, facts(0), prices)
    assert (result.suggestions, result.efficiency_score_percent) == ([], 100)


def test_a_model_the_table_does_not_price_is_left_out(prices) -> None:
    group = SettingGroup("someone-elses-model", "1024x1024", "high", 5, 500_000)
    result = analyze("u1", Scope.USER, START, END, facts(500_000, [group], generated=5), prices)
    assert result.suggestions == []


def test_savings_never_exceed_what_the_images_cost(prices) -> None:
    # Recorded at a cost below the table's figure (say, a discount): the
    # suggestion cannot save more than was spent.
    group = SettingGroup("gpt-image-2", "1024x1024", "high", 2, 100_000)
    result = analyze("u1", Scope.USER, START, END, facts(100_000, [group], generated=2), prices)
    assert all(s.suggested_cost_micros >= 0 for s in result.suggestions)
    assert max(s.savings_micros for s in result.suggestions) == 100_000


def test_prompt_tokens_beyond_the_built_prompts_rate_are_priced_at_the_text_rate(
    prices,
) -> None:
    # 4 custom images used 400 input tokens; the built prompts 300 for 10
    # images (30 an image), so 120 would do: 280 extra tokens at 5 USD per 1M
    # = 1,400 micros.
    prompts = [
        PromptGroup("gpt-image-2", True, 4, 400, 30_000),
        PromptGroup("gpt-image-2", False, 10, 300, 70_000),
    ]
    rows = prompt_efficiency(prompts, [], prices)
    assert len(rows) == 1
    row = rows[0]
    assert (row.custom_tokens_per_image, row.built_tokens_per_image) == (100, 30)
    assert row.excess_cost_micros == 1_400

    result = analyze(
        "u1", Scope.USER, START, END, facts(100_000, prompts=prompts, generated=14), prices
    )
    (prompt,) = result.suggestions
    assert prompt.kind is SuggestionKind.PROMPT
    assert (prompt.records, prompt.current_cost_micros, prompt.suggested_cost_micros) == (
        4,
        30_000,
        28_600,
    )
    assert prompt.impact is Impact.LOW  # 1.4% of the spend


def test_the_prompt_baseline_falls_back_to_every_users_built_prompts(prices) -> None:
    mine = [PromptGroup("gpt-image-2", True, 2, 100, 10_000)]
    everyone = [PromptGroup("gpt-image-2", False, 5, 100, 30_000)]  # 20 an image
    (row,) = prompt_efficiency(mine, everyone, prices)
    assert (row.built_images, row.built_input_tokens) == (5, 100)
    assert row.excess_cost_micros == (100 - 40) * 5  # 60 tokens at 5 micros each


def test_shorter_custom_prompts_give_no_prompt_suggestion(prices) -> None:
    prompts = [
        PromptGroup("gpt-image-2", True, 4, 40, 30_000),
        PromptGroup("gpt-image-2", False, 10, 300, 70_000),
    ]
    result = analyze(
        "u1", Scope.USER, START, END, facts(100_000, prompts=prompts, generated=14), prices
    )
    assert result.suggestions == []
    assert result.prompts[0].excess_cost_micros == 0


def test_avoidable_generations_are_a_caching_suggestion_at_their_whole_cost(prices) -> None:
    caching = CachingFacts(
        similar_off_dish_cached=2,
        similar_off_dish_cached_cost_micros=100_000,
        repeated_recipes=1,
        repeated_generations=2,
        repeated_generation_cost_micros=100_000,
        avoidable=3,
        avoidable_cost_micros=150_000,
    )
    result = analyze(
        "u1", Scope.USER, START, END, facts(600_000, caching=caching, generated=12, hits=4), prices
    )
    (suggestion,) = result.suggestions
    assert suggestion.kind is SuggestionKind.CACHING
    assert (suggestion.records, suggestion.savings_micros, suggestion.suggested_cost_micros) == (
        3,
        150_000,
        0,
    )
    assert suggestion.impact is Impact.HIGH  # 25%
    assert result.caching.hit_rate_basis_points == 2_500  # 4 of 16


def test_failures_after_a_reservation_are_counted_from_the_outcomes(prices) -> None:
    outcomes = [
        OutcomeRow(Outcome.GENERATED, 3, 90_000, 0),
        OutcomeRow(Outcome.FAILED, 2, 0, 0),
        OutcomeRow(Outcome.FALLBACK, 1, 0, 0),
        OutcomeRow(Outcome.REFUSED, 5, 0, 0),
    ]
    result = analyze("u1", Scope.USER, START, END, facts(90_000, outcomes=outcomes), prices)
    assert result.waste.failures_after_reservation == 3
    assert result.generated_images == 3
    assert result.actions == [
        "3 attempts failed after holding a reservation (cost 0.0000 USD); "
        "check the errors in ListUsage."
    ]


@pytest.mark.parametrize(
    ("savings", "impact"),
    [(200, Impact.HIGH), (199, Impact.MEDIUM), (50, Impact.MEDIUM), (49, Impact.LOW)],
)
def test_impact_thresholds(savings: int, impact: Impact) -> None:
    assert impact_of(savings, 1_000) is impact


def test_money_in_words() -> None:
    assert usd(69_210_000) == "69.21 USD"
    assert usd(17_304_999) == "17.30 USD"
    assert usd(17_305_000) == "17.31 USD"
    assert usd(1_400) == "0.0014 USD"
    assert usd(0) == "0.0000 USD"


def test_monthly_savings_scale_the_range_to_thirty_days() -> None:
    assert monthly(700, timedelta(days=7)) == 3_000
    assert monthly(700, timedelta(days=60)) == 350


def test_the_range_defaults_to_the_last_thirty_days_and_is_checked() -> None:
    violations = Violations()
    assert analysis_range(violations, None, None, END) == (START, END)
    assert analysis_range(violations, None, START, END) == (START - timedelta(days=30), START)
    violations.raise_if_any()
    for start, end in [(END, END), (END - timedelta(days=367), END)]:
        violations = Violations()
        analysis_range(violations, start, end, END)
        with pytest.raises(InvalidArgument):
            violations.raise_if_any()
