"""Protobuf messages <-> the plain values of cost optimization. No rules here."""

from __future__ import annotations

from typing import cast

from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import optimization_pb2 as opb
from recipeimage.common.v1 import image_quality_pb2

from services.budget.domain.optimization import (
    Analysis,
    CachingAnalysis,
    Impact,
    PromptEfficiency,
    Scope,
    Suggestion,
    SuggestionKind,
    Waste,
)
from services.budget.domain.usage import BreakdownRow, Outcome, OutcomeRow
from services.common import protoenum, quality
from services.common.timestamps import to_proto as timestamp

_SCOPES = cast(
    dict[Scope, opb.OptimizationScope.ValueType],
    protoenum.to_proto(Scope, opb.OptimizationScope, "OPTIMIZATION_SCOPE_"),
)
_KINDS = cast(
    dict[SuggestionKind, opb.SuggestionKind.ValueType],
    protoenum.to_proto(SuggestionKind, opb.SuggestionKind, "SUGGESTION_KIND_"),
)
_IMPACTS = cast(
    dict[Impact, opb.ImpactLevel.ValueType],
    protoenum.to_proto(Impact, opb.ImpactLevel, "IMPACT_LEVEL_"),
)
_OUTCOME_NAMES = {member: f"USAGE_OUTCOME_{member.name}" for member in Outcome}
# Every outcome must have its UsageOutcome value (fails at import, not at a request).
for _name in _OUTCOME_NAMES.values():
    pb.UsageOutcome.Value(_name)


def scope_from_proto(value: int) -> Scope:
    """UNSPECIFIED (and a value this build does not know) means USER."""
    return Scope.SYSTEM if value == opb.OPTIMIZATION_SCOPE_SYSTEM else Scope.USER


def suggestion(value: Suggestion) -> opb.OptimizationSuggestion:
    return opb.OptimizationSuggestion(
        kind=_KINDS[value.kind],
        impact=_IMPACTS[value.impact],
        current_setting=value.current_setting,
        suggested_setting=value.suggested_setting,
        records=value.records,
        current_cost_micros=value.current_cost_micros,
        suggested_cost_micros=value.suggested_cost_micros,
        savings_micros=value.savings_micros,
        estimated_monthly_savings_micros=value.monthly_savings_micros,
        description=value.description,
    )


def caching(value: CachingAnalysis) -> opb.CachingAnalysis:
    facts = value.facts
    return opb.CachingAnalysis(
        similar_off_dish_cached=facts.similar_off_dish_cached,
        similar_off_dish_cached_cost_micros=facts.similar_off_dish_cached_cost_micros,
        repeated_recipes=facts.repeated_recipes,
        repeated_generations=facts.repeated_generations,
        repeated_generation_cost_micros=facts.repeated_generation_cost_micros,
        cache_hits=value.cache_hits,
        generations=value.generations,
        hit_rate_basis_points=value.hit_rate_basis_points,
        system_hit_rate_basis_points=value.system_hit_rate_basis_points,
    )


def prompt_efficiency(value: PromptEfficiency) -> opb.PromptEfficiency:
    return opb.PromptEfficiency(
        model=value.model,
        custom_prompt_images=value.custom_images,
        custom_prompt_input_tokens=value.custom_input_tokens,
        built_prompt_images=value.built_images,
        built_prompt_input_tokens=value.built_input_tokens,
        custom_tokens_per_image=value.custom_tokens_per_image,
        built_tokens_per_image=value.built_tokens_per_image,
        excess_cost_micros=value.excess_cost_micros,
    )


def waste(value: Waste) -> opb.WasteAnalysis:
    return opb.WasteAnalysis(
        unserved_generations=value.facts.unserved_generations,
        unserved_cost_micros=value.facts.unserved_cost_micros,
        failures_after_reservation=value.failures_after_reservation,
        failure_cost_micros=value.failure_cost_micros,
        retries=value.facts.retries,
        retry_cost_micros=value.facts.retry_cost_micros,
    )


def breakdown(row: BreakdownRow) -> opb.CostBreakdown:
    return opb.CostBreakdown(
        model=row.model,
        size=row.size,
        quality=image_quality_pb2.ImageQuality.ValueType(quality.to_proto(row.quality)),
        generations=row.generations,
        successful_generations=row.successful,
        cost_micros=row.cost_micros,
        cache_hits=row.cache_hits,
        cost_saved_micros=row.cost_saved_micros,
    )


def outcome(row: OutcomeRow) -> opb.OutcomeCost:
    return opb.OutcomeCost(
        outcome=_OUTCOME_NAMES[row.outcome],
        count=row.count,
        cost_micros=row.cost_micros,
        cost_saved_micros=row.cost_saved_micros,
    )


def analysis(value: Analysis) -> opb.AnalyzeCostOptimizationResponse:
    return opb.AnalyzeCostOptimizationResponse(
        user_id=value.user_id,
        scope=_SCOPES[value.scope],
        start_time=timestamp(value.start),
        end_time=timestamp(value.end),
        total_cost_micros=value.total_cost_micros,
        generated_images=value.generated_images,
        suggestions=[suggestion(s) for s in value.suggestions],
        caching=caching(value.caching),
        prompt_efficiency=[prompt_efficiency(p) for p in value.prompts],
        waste=waste(value.waste),
        efficiency_score_percent=value.efficiency_score_percent,
        recommended_spend_micros=value.recommended_spend_micros,
        estimated_monthly_savings_micros=value.monthly_savings_micros,
        recommended_actions=value.actions,
        breakdown=[breakdown(row) for row in value.summary.breakdown],
        outcomes=[
            outcome(row)
            for row in sorted(value.summary.outcomes, key=lambda r: list(Outcome).index(r.outcome))
        ],
        price_table_version=value.price_table_version,
    )
