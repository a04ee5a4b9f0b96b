"""One GenerateImage attempt, planned: the valid request, its usage record so
far and what to look for in the cache; the same plan at a degradation step's
quality and size; and the steps of a request with their cache hits (what
GenerateImage and QuoteImage both choose from)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from services.common.prices import estimate_prompt_tokens
from services.image.app.cache_lookup import CacheLookup
from services.image.domain.accounting import AttemptState, Usage
from services.image.domain.cache_policy import Hit, Lookup, cache_key, quality_rank
from services.image.domain.command import ValidRequest
from services.image.domain.degradation import Option, Step, steps
from services.image.recipes.analyzer import RecipeContext
from services.image.recipes.similarity import match_key


@dataclass(frozen=True)
class Plan:
    """One GenerateImage attempt, planned: the valid request, its usage record
    so far, and what to look for in the cache."""

    request: ValidRequest
    usage: Usage
    lookup: Lookup
    # What BudgetService held for the caller's request_id at admission (None:
    # the caller gave none, or the plan is a quote's).
    attempt: AttemptState | None = None

    @property
    def built_prompt(self) -> bool:
        return not self.request.prompt

    @property
    def max_cost_micros(self) -> int:
        """The reservation's hold: the per-image figure plus the prompt's tokens."""
        request = self.request
        return request.price.max_cost_micros(
            request.quality, request.size, estimate_prompt_tokens(self.usage.prompt)
        )

    @property
    def expected_cost_micros(self) -> int:
        """What the commit charges without reported usage: the per-image figure."""
        return self.request.price.per_image_micros(self.request.quality, self.request.size)


def lookup_for(
    request: ValidRequest, prompt: str, context: RecipeContext, *, similar: bool, threshold: float
) -> Lookup:
    return Lookup(
        key=cache_key(request.model, request.size, request.quality, prompt),
        match_key=match_key(request.model, request.size, context) if similar else None,
        context=context,
        quality=request.quality,
        quality_rank=quality_rank(request.quality),
        threshold=threshold,
        requested_micros=request.price.per_image_micros(request.quality, request.size),
    )


def at_step(plan: Plan, step: Step) -> Plan:
    """The plan at a step's quality and size: its own cache key, reservation
    and usage record."""
    quality, size = step.setting.quality, step.setting.size
    request = replace(plan.request, quality=quality, size=size)
    lookup = lookup_for(
        request,
        plan.usage.prompt,
        plan.lookup.context,
        similar=step.similar,
        threshold=plan.lookup.threshold,
    )
    # The dish key names the size (a caller's own prompt has none).
    dish = match_key(request.model, size, plan.lookup.context) or "" if plan.usage.dish_key else ""
    usage = replace(plan.usage, quality=quality, size=size, dish_key=dish)
    return replace(plan, request=request, usage=usage, lookup=lookup)


@dataclass(frozen=True)
class PlannedStep:
    plan: Plan
    option: Option
    hit: Hit | None


def plan_steps(plan: Plan, cache: CacheLookup, first_hit: Hit | None) -> list[PlannedStep]:
    """The request's steps (domain.degradation.steps), each planned and looked
    up in the cache (read only: no hit is counted); the first step's lookup
    is the request's own, whose result the caller has."""
    request = plan.request
    found = steps(
        request.degradation,
        request.setting,
        request.price.qualities,
        request.price.sizes,
        allow_similar=request.allow_similar,
        built_prompt=plan.built_prompt,
    )
    planned = []
    for index, step in enumerate(found):
        step_plan = plan if index == 0 else at_step(plan, step)
        hit = first_hit if index == 0 else cache.find(step_plan.lookup)
        option = Option(step, step_plan.max_cost_micros, cached=hit is not None)
        planned.append(PlannedStep(step_plan, option, hit))
    return planned
