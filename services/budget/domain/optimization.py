"""Cost optimization: what a range of usage would have cost with other settings,
priced with the price table from aggregates of the ledger. Pure calculations:
no I/O, no guessed constant; every figure follows from the facts given.

Definitions (the README's "Cost optimization" states them for callers):

- A setting suggestion (quality, size, model) prices the range's generated
  images of one model, size and quality at another setting: each image would
  have cost the per-image figure of the suggested setting instead of the
  current one (its prompt's tokens cost the same either way), so
  savings = images x (figure now - figure suggested), suggested cost = what
  the images cost - savings.
- Quality: the best lower quality of the same model and size whose figure is
  cheaper. Size: the cheapest size of the same model and quality. Model: the
  cheapest active model with the same quality and size.
- Prompt: caller-supplied prompts' input tokens beyond the built prompts'
  tokens per image, at the model's text input rate.
- Caching: generations the cache could have served (see CachingFacts), at
  their whole cost.
- Impact: savings as a share of the range's spend: HIGH at 20% or more,
  MEDIUM at 5% or more, LOW below.
- Efficiency score: recommended spend / spend in percent, where recommended
  spend = spend - the largest suggestion's savings (suggestions price the
  same images in different ways, so their savings do not add up).
- Monthly estimate: savings x 30 days / the range's length.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.budget.domain.usage import Outcome, OutcomeRow, UsageSummary
from services.budget.domain.validation import MAX_RANGE, Violations
from services.common.prices import ModelPrice, PriceTable

DEFAULT_RANGE = timedelta(days=30)
MONTH = timedelta(days=30)
HIGH_SHARE_PERCENT = 20
MEDIUM_SHARE_PERCENT = 5
TOKENS_PER_RATE = 1_000_000
BASIS_POINTS = 10_000
# The ledger's quality names in ImageService's cache order (a cached image of
# the same or a better rank may serve a similar-dish request).
QUALITY_RANKS = {"low": 1, "medium": 2, "standard": 2, "high": 3, "hd": 3, "xhigh": 4, "max": 5}


class Scope(enum.StrEnum):
    USER = "user"
    SYSTEM = "system"


class SuggestionKind(enum.StrEnum):
    SIZE = "size"
    QUALITY = "quality"
    PROMPT = "prompt"
    CACHING = "caching"
    MODEL = "model"


class Impact(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class SettingGroup:
    """The range's generated images of one model, size and quality."""

    model: str
    size: str
    quality: str
    images: int
    cost_micros: int


@dataclass(frozen=True)
class PromptGroup:
    """Generated images of one model whose prompt the caller wrote (custom)
    or the service built, with their input tokens and cost."""

    model: str
    custom: bool
    images: int
    input_tokens: int
    cost_micros: int


@dataclass(frozen=True)
class CachingFacts:
    # Generated with allow_similar off; the dish was generated before at the
    # same or a better quality.
    similar_off_dish_cached: int = 0
    similar_off_dish_cached_cost_micros: int = 0
    # Recipes generated more than once in the range; the generations after
    # each one's first.
    repeated_recipes: int = 0
    repeated_generations: int = 0
    repeated_generation_cost_micros: int = 0
    # Generations in either set above (counted once), and their cost.
    avoidable: int = 0
    avoidable_cost_micros: int = 0


@dataclass(frozen=True)
class WasteFacts:
    unserved_generations: int = 0
    unserved_cost_micros: int = 0
    retries: int = 0
    retry_cost_micros: int = 0


@dataclass(frozen=True)
class OptimizationFacts:
    """Everything the analysis needs, read from the ledger in one snapshot."""

    summary: UsageSummary
    settings: list[SettingGroup]
    prompts: list[PromptGroup]
    # The built prompts of every user (the baseline when the scope has none).
    system_prompts: list[PromptGroup]
    caching: CachingFacts
    waste: WasteFacts
    system_cache_hits: int
    system_generations: int


@dataclass(frozen=True)
class Suggestion:
    kind: SuggestionKind
    impact: Impact
    current_setting: str
    suggested_setting: str
    records: int
    current_cost_micros: int
    suggested_cost_micros: int
    monthly_savings_micros: int
    description: str
    # What to do, in plain words (the start of its recommended action).
    action: str

    @property
    def savings_micros(self) -> int:
        return self.current_cost_micros - self.suggested_cost_micros


@dataclass(frozen=True)
class CachingAnalysis:
    facts: CachingFacts
    cache_hits: int
    generations: int
    hit_rate_basis_points: int
    system_hit_rate_basis_points: int


@dataclass(frozen=True)
class PromptEfficiency:
    model: str
    custom_images: int
    custom_input_tokens: int
    built_images: int
    built_input_tokens: int
    excess_cost_micros: int

    @property
    def custom_tokens_per_image(self) -> int:
        return self.custom_input_tokens // self.custom_images if self.custom_images else 0

    @property
    def built_tokens_per_image(self) -> int:
        return self.built_input_tokens // self.built_images if self.built_images else 0


@dataclass(frozen=True)
class Waste:
    facts: WasteFacts
    failures_after_reservation: int
    failure_cost_micros: int


@dataclass(frozen=True)
class Analysis:
    user_id: str
    scope: Scope
    start: datetime
    end: datetime
    total_cost_micros: int
    generated_images: int
    suggestions: list[Suggestion]
    caching: CachingAnalysis
    prompts: list[PromptEfficiency]
    waste: Waste
    efficiency_score_percent: int
    recommended_spend_micros: int
    monthly_savings_micros: int
    actions: list[str]
    summary: UsageSummary
    price_table_version: str


# ---- money in words ----------------------------------------------------------


def usd(micros: int) -> str:
    """Micros as USD, rounded half up: cents from 1 USD on, else 4 decimals."""
    if micros >= 1_000_000:
        cents = (micros + 5_000) // 10_000
        return f"{cents // 100}.{cents % 100:02d} USD"
    tenths = (micros + 50) // 100
    return f"{tenths // 10_000}.{tenths % 10_000:04d} USD"


def impact_of(savings_micros: int, spend_micros: int) -> Impact:
    if savings_micros * 100 >= HIGH_SHARE_PERCENT * spend_micros:
        return Impact.HIGH
    if savings_micros * 100 >= MEDIUM_SHARE_PERCENT * spend_micros:
        return Impact.MEDIUM
    return Impact.LOW


def monthly(micros: int, span: timedelta) -> int:
    """micros scaled from span to 30 days, rounded down."""
    return (
        micros * (MONTH // timedelta(microseconds=1)) // max(span // timedelta(microseconds=1), 1)
    )


def rate_basis_points(part: int, whole: int) -> int:
    return part * BASIS_POINTS // whole if whole else 0


# ---- settings: quality, size, model -------------------------------------------


@dataclass
class _Tally:
    """Images, cost and savings of one (kind, current, suggested) pair."""

    images: int = 0
    cost_micros: int = 0
    savings_micros: int = 0


def _figure(price: ModelPrice, quality: str, size: str) -> int | None:
    return price.per_image.get(quality, {}).get(size)


def _lower_quality(price: ModelPrice, quality: str, size: str) -> str | None:
    """The best quality below this one (the table lists them from the
    cheapest up) whose figure at this size is cheaper."""
    current = _figure(price, quality, size)
    qualities = price.qualities
    if current is None or quality not in qualities:
        return None
    for lower in reversed(qualities[: qualities.index(quality)]):
        figure = _figure(price, lower, size)
        if figure is not None and figure < current:
            return lower
    return None


def _cheaper_size(price: ModelPrice, quality: str, size: str) -> str | None:
    current = _figure(price, quality, size)
    if current is None:
        return None
    sizes = price.per_image[quality]
    cheapest = min(sizes, key=lambda name: (sizes[name], price.sizes.index(name)))
    return cheapest if sizes[cheapest] < current else None


def _cheaper_model(prices: PriceTable, price: ModelPrice, quality: str, size: str) -> str | None:
    current = _figure(price, quality, size)
    if current is None:
        return None
    offers = [
        (figure, index, other.name)
        for index, other in enumerate(prices.models.values())
        if other.status == "active"
        and (figure := _figure(other, quality, size)) is not None
        and figure < current
    ]
    return min(offers)[2] if offers else None


def _setting_tallies(
    groups: list[SettingGroup], prices: PriceTable
) -> dict[tuple[SuggestionKind, str, str], _Tally]:
    tallies: dict[tuple[SuggestionKind, str, str], _Tally] = {}

    def add(kind: SuggestionKind, now: str, then: str, group: SettingGroup, saved: int) -> None:
        tally = tallies.setdefault((kind, now, then), _Tally())
        tally.images += group.images
        tally.cost_micros += group.cost_micros
        tally.savings_micros += min(group.images * saved, group.cost_micros)

    for group in groups:
        price = prices.models.get(group.model)
        if price is None or group.images <= 0:
            continue  # a model the table does not price: nothing to compare
        current = _figure(price, group.quality, group.size)
        if current is None:
            continue
        quality = _lower_quality(price, group.quality, group.size)
        if quality is not None:
            saved = current - price.per_image[quality][group.size]
            add(SuggestionKind.QUALITY, group.quality, quality, group, saved)
        size = _cheaper_size(price, group.quality, group.size)
        if size is not None:
            saved = current - price.per_image[group.quality][size]
            add(SuggestionKind.SIZE, group.size, size, group, saved)
        model = _cheaper_model(prices, price, group.quality, group.size)
        if model is not None:
            saved = current - prices.models[model].per_image[group.quality][group.size]
            add(SuggestionKind.MODEL, group.model, model, group, saved)
    return tallies


# (description, action) of each setting suggestion.
_SETTING_WORDS = {
    SuggestionKind.QUALITY: (
        "{images} {now}-quality images cost {cost}; the same at {then} would have cost "
        "{then_cost}.",
        "Request {then} instead of {now} quality",
    ),
    SuggestionKind.SIZE: (
        "{images} images at {now} cost {cost}; the same at {then} would have cost {then_cost}.",
        "Request size {then} instead of {now}",
    ),
    SuggestionKind.MODEL: (
        "{images} images from {now} cost {cost}; the same from {then} would have cost {then_cost}.",
        "Use model {then} instead of {now}",
    ),
}


def _setting_suggestions(
    groups: list[SettingGroup], prices: PriceTable, spend: int, span: timedelta
) -> list[Suggestion]:
    suggestions = []
    for (kind, now, then), tally in _setting_tallies(groups, prices).items():
        if tally.savings_micros <= 0:
            continue
        suggested = tally.cost_micros - tally.savings_micros
        description, action = _SETTING_WORDS[kind]
        words = description.format(
            images=tally.images,
            now=now,
            then=then,
            cost=usd(tally.cost_micros),
            then_cost=usd(suggested),
        )
        suggestions.append(
            Suggestion(
                kind=kind,
                impact=impact_of(tally.savings_micros, spend),
                current_setting=f"{kind.value} {now}",
                suggested_setting=f"{kind.value} {then}",
                records=tally.images,
                current_cost_micros=tally.cost_micros,
                suggested_cost_micros=suggested,
                monthly_savings_micros=monthly(tally.savings_micros, span),
                description=words,
                action=action.format(now=now, then=then),
            )
        )
    return suggestions


# ---- prompts -----------------------------------------------------------------


def prompt_efficiency(
    scope: list[PromptGroup], system: list[PromptGroup], prices: PriceTable
) -> list[PromptEfficiency]:
    """For each model with caller-supplied prompts: their tokens per image
    against the built prompts' (the scope's, else every user's), and what the
    tokens beyond that rate cost at the model's text input rate."""
    built = {group.model: group for group in scope if not group.custom and group.images}
    fallback = {group.model: group for group in system if not group.custom and group.images}
    rows = []
    for group in sorted(scope, key=lambda g: g.model):
        if not group.custom or group.images <= 0:
            continue
        baseline = built.get(group.model) or fallback.get(group.model)
        if baseline is None:
            rows.append(PromptEfficiency(group.model, group.images, group.input_tokens, 0, 0, 0))
            continue
        allowed = group.images * baseline.input_tokens // baseline.images
        excess = max(group.input_tokens - allowed, 0)
        price = prices.models.get(group.model)
        rate = price.token_rates.text_input if price and price.token_rates else 0
        cost = min(-(-excess * rate // TOKENS_PER_RATE), group.cost_micros)
        rows.append(
            PromptEfficiency(
                group.model,
                group.images,
                group.input_tokens,
                baseline.images,
                baseline.input_tokens,
                cost,
            )
        )
    return rows


def _prompt_suggestions(
    rows: list[PromptEfficiency], scope: list[PromptGroup], spend: int, span: timedelta
) -> list[Suggestion]:
    costs = {group.model: group.cost_micros for group in scope if group.custom}
    suggestions = []
    for row in rows:
        if row.excess_cost_micros <= 0:
            continue
        cost = costs[row.model]
        suggestions.append(
            Suggestion(
                kind=SuggestionKind.PROMPT,
                impact=impact_of(row.excess_cost_micros, spend),
                current_setting=f"custom prompts, {row.custom_tokens_per_image} tokens an image",
                suggested_setting=f"built prompts, {row.built_tokens_per_image} tokens an image",
                records=row.custom_images,
                current_cost_micros=cost,
                suggested_cost_micros=cost - row.excess_cost_micros,
                monthly_savings_micros=monthly(row.excess_cost_micros, span),
                description=(
                    f"{row.custom_images} images from {row.model} with your own prompts used "
                    f"{row.custom_tokens_per_image} input tokens an image, the built prompts "
                    f"{row.built_tokens_per_image}; the extra tokens cost "
                    f"{usd(row.excess_cost_micros)}."
                ),
                action=f"Shorten your prompts for {row.model}, or let the service build them",
            )
        )
    return suggestions


# ---- caching and waste -------------------------------------------------------


def _generated(outcomes: list[OutcomeRow]) -> int:
    return sum(row.count for row in outcomes if row.outcome is Outcome.GENERATED)


def caching_analysis(facts: OptimizationFacts) -> CachingAnalysis:
    hits = facts.summary.period.cache_hits
    generations = _generated(facts.summary.outcomes)
    return CachingAnalysis(
        facts.caching,
        hits,
        generations,
        rate_basis_points(hits, hits + generations),
        rate_basis_points(
            facts.system_cache_hits, facts.system_cache_hits + facts.system_generations
        ),
    )


def _caching_suggestion(caching: CachingFacts, spend: int, span: timedelta) -> list[Suggestion]:
    if caching.avoidable_cost_micros <= 0:
        return []
    cost = caching.avoidable_cost_micros
    return [
        Suggestion(
            kind=SuggestionKind.CACHING,
            impact=impact_of(cost, spend),
            current_setting="generate",
            suggested_setting="serve from the cache",
            records=caching.avoidable,
            current_cost_micros=cost,
            suggested_cost_micros=0,
            monthly_savings_micros=monthly(cost, span),
            description=(
                f"{caching.avoidable} generations costing {usd(cost)} could have been served "
                f"from the cache: {caching.similar_off_dish_cached} asked with allow_similar off "
                f"for a dish generated before, {caching.repeated_generations} generated "
                f"{caching.repeated_recipes} recipes again."
            ),
            action="Set allow_similar, and reuse each recipe's image instead of generating anew",
        )
    ]


_FAILED_AFTER_RESERVATION = (Outcome.FAILED, Outcome.FALLBACK, Outcome.ABANDONED)


def waste_of(facts: OptimizationFacts) -> Waste:
    failed = [row for row in facts.summary.outcomes if row.outcome in _FAILED_AFTER_RESERVATION]
    return Waste(
        facts.waste,
        sum(row.count for row in failed),
        sum(row.cost_micros for row in failed),
    )


def _waste_actions(waste: Waste) -> list[str]:
    actions = []
    if waste.failures_after_reservation:
        actions.append(
            f"{waste.failures_after_reservation} attempts failed after holding a reservation "
            f"(cost {usd(waste.failure_cost_micros)}); check the errors in ListUsage."
        )
    if waste.facts.retries:
        actions.append(
            f"{waste.facts.retries} attempts retried a recipe right after a failure or refusal "
            f"(cost {usd(waste.facts.retry_cost_micros)}); wait for RetryInfo before retrying."
        )
    if waste.facts.unserved_generations:
        actions.append(
            f"{waste.facts.unserved_generations} generated images "
            f"({usd(waste.facts.unserved_cost_micros)}) were never served again; "
            "a lower quality may do for one-off images."
        )
    return actions


# ---- the analysis ------------------------------------------------------------


def _action(suggestion: Suggestion) -> str:
    return (
        f"{suggestion.action}: saves {usd(suggestion.savings_micros)} in the range, about "
        f"{usd(suggestion.monthly_savings_micros)} a month. {suggestion.description}"
    )


def analyze(
    user_id: str,
    scope: Scope,
    start: datetime,
    end: datetime,
    facts: OptimizationFacts,
    prices: PriceTable,
) -> Analysis:
    span = end - start
    spend = facts.summary.period.cost_micros
    prompts = prompt_efficiency(facts.prompts, facts.system_prompts, prices)
    suggestions = sorted(
        [
            *_setting_suggestions(facts.settings, prices, spend, span),
            *_prompt_suggestions(prompts, facts.prompts, spend, span),
            *_caching_suggestion(facts.caching, spend, span),
        ],
        key=lambda s: (-s.savings_micros, list(SuggestionKind).index(s.kind), s.current_setting),
    )
    best = suggestions[0].savings_micros if suggestions else 0
    recommended = spend - best
    waste = waste_of(facts)
    return Analysis(
        user_id=user_id,
        scope=scope,
        start=start,
        end=end,
        total_cost_micros=spend,
        generated_images=_generated(facts.summary.outcomes),
        suggestions=suggestions,
        caching=caching_analysis(facts),
        prompts=prompts,
        waste=waste,
        efficiency_score_percent=recommended * 100 // spend if spend else 100,
        recommended_spend_micros=recommended,
        monthly_savings_micros=monthly(best, span),
        actions=[*(_action(s) for s in suggestions), *_waste_actions(waste)],
        summary=facts.summary,
        price_table_version=prices.version,
    )


def analysis_range(
    violations: Violations, start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """[start, end) of an analysis: end defaults to now, start to 30 days
    before end; at most MAX_RANGE, never empty."""
    end = end if end is not None else now
    start = start if start is not None else end - DEFAULT_RANGE
    if end <= start:
        violations.add("end_time", "must be after start_time")
    elif end - start > MAX_RANGE:
        violations.add("end_time", "a range is at most 366 days")
    return start, end
