"""Budget-aware degradation: what a request accepts instead of a refusal for
money, and which step of it is served. Plain Python.

The steps, in order:
1. the requested quality and size (the request's own cache lookup, then a
   generation when its reservation fits);
2. with cached_only and no allow_similar: the requested setting again, looked
   up in the similar-dish cache (never generated);
3. each accepted lower quality at the requested size, then each accepted
   smaller size at the requested quality and each accepted lower quality.
   A cached image of the step (the cache policy as always: exact, or the same
   dish at the same or a better quality) is served at no cost; otherwise the
   step is generated when its reservation fits, never with cached_only.

`choose` takes the first step that can be served. GenerateImage and
QuoteImage both call it on the same steps and the same room, so a quote says
what GenerateImage does. The reservation stays the guard: a step chosen here
is reserved like any request, and a refusal for money at that time moves on
to the next step.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.common.errors import Violations
from services.image.domain.cache_policy import quality_rank

# At most this many accepted qualities and sizes each (a model offers fewer).
MAX_ACCEPTED = 10
# BudgetService's reasons for a reservation refused for money: only these
# move on to the next step; a rate rule or a concurrency cap does not.
MONEY_REASONS = frozenset(
    {
        "PER_GENERATION_LIMIT_EXCEEDED",
        "DAILY_LIMIT_EXCEEDED",
        "MONTHLY_LIMIT_EXCEEDED",
        "SYSTEM_DAILY_LIMIT_EXCEEDED",
        "SYSTEM_MONTHLY_LIMIT_EXCEEDED",
    }
)
# Whether an accepted quality or size is below the requested one.
_Below = Callable[[str], bool]


@dataclass(frozen=True)
class DegradationPolicy:
    """What a request accepts instead of a refusal for money."""

    lower_quality: bool = False
    # The caller's order of lower qualities; empty: the default order.
    qualities: tuple[str, ...] = ()
    smaller_size: bool = False
    # The caller's order of smaller sizes; empty: the default order.
    sizes: tuple[str, ...] = ()
    cached_only: bool = False

    @property
    def asked(self) -> bool:
        return bool(
            self.lower_quality
            or self.qualities
            or self.smaller_size
            or self.sizes
            or self.cached_only
        )


NO_DEGRADATION = DegradationPolicy()


@dataclass(frozen=True)
class Setting:
    quality: str
    size: str


@dataclass(frozen=True)
class Step:
    setting: Setting
    # Look for an image of the same dish too (a built prompt only).
    similar: bool
    may_generate: bool


def pixels(size: str) -> int:
    width, _, height = size.partition("x")
    return int(width) * int(height)


def check_policy(
    violations: Violations,
    policy: DegradationPolicy,
    requested: Setting,
    offered_qualities: Sequence[str],
    offered_sizes: Sequence[str],
) -> None:
    """Name every accepted quality or size the model does not offer, that is
    not below the requested one, or given twice."""
    rank = quality_rank(requested.quality)
    for field, values, offered, below in (
        ("degradation.qualities", policy.qualities, offered_qualities, _lower_quality(rank)),
        ("degradation.sizes", policy.sizes, offered_sizes, _smaller_size(requested.size)),
    ):
        if len(values) > MAX_ACCEPTED:
            violations.add(field, f"at most {MAX_ACCEPTED} items")
            continue
        for index, value in enumerate(values):
            if value not in offered:
                violations.add(f"{field}[{index}]", f"{value!r} is not offered by the model")
            elif not below(value):
                violations.add(f"{field}[{index}]", f"{value!r} is not below the requested one")
            elif value in values[:index]:
                violations.add(f"{field}[{index}]", f"{value!r} is given twice")


def _lower_quality(rank: int) -> _Below:
    return lambda quality: 0 < quality_rank(quality) < rank


def _smaller_size(size: str) -> _Below:
    return lambda other: pixels(other) < pixels(size)


def steps(
    policy: DegradationPolicy,
    requested: Setting,
    offered_qualities: Sequence[str],
    offered_sizes: Sequence[str],
    *,
    allow_similar: bool,
    built_prompt: bool,
) -> list[Step]:
    """The steps of a request, in order (see the module's doc); only the
    requested one when the request asks for no degradation."""
    first = Step(requested, similar=allow_similar and built_prompt, may_generate=True)
    if not policy.asked:
        return [first]
    found = [first]
    if policy.cached_only and built_prompt and not allow_similar:
        found.append(Step(requested, similar=True, may_generate=False))
    similar = built_prompt and (allow_similar or policy.cached_only)
    qualities = policy.qualities or _default_qualities(policy, requested, offered_qualities)
    sizes = policy.sizes or _default_sizes(policy, requested, offered_sizes)
    for size in (requested.size, *sizes):
        for quality in (requested.quality, *qualities):
            setting = Setting(quality, size)
            if setting != requested:
                found.append(Step(setting, similar, may_generate=not policy.cached_only))
    return found


def _default_qualities(
    policy: DegradationPolicy, requested: Setting, offered: Sequence[str]
) -> tuple[str, ...]:
    if not policy.lower_quality:
        return ()
    lower = _lower_quality(quality_rank(requested.quality))
    return tuple(sorted((q for q in offered if lower(q)), key=quality_rank, reverse=True))


def _default_sizes(
    policy: DegradationPolicy, requested: Setting, offered: Sequence[str]
) -> tuple[str, ...]:
    if not policy.smaller_size:
        return ()
    smaller = _smaller_size(requested.size)
    return tuple(sorted((s for s in offered if smaller(s)), key=pixels, reverse=True))


@dataclass(frozen=True)
class Room:
    """What a reservation may hold now: the per-generation limit and what is
    left in each window (BudgetService's CheckBudget)."""

    per_generation_micros: int
    remaining_micros: tuple[int, ...]

    def fits(self, amount_micros: int) -> bool:
        return amount_micros <= self.per_generation_micros and all(
            amount_micros <= remaining for remaining in self.remaining_micros
        )


@dataclass(frozen=True)
class Option:
    """A step as the choice sees it: what its reservation holds, and whether a
    cached image answers it."""

    step: Step
    max_cost_micros: int
    cached: bool


class Action(enum.Enum):
    SERVE_CACHED = "serve_cached"
    GENERATE = "generate"
    # Nothing accepted fits: the request's own refusal.
    REFUSE = "refuse"


@dataclass(frozen=True)
class Choice:
    action: Action
    # The step chosen (0 for a refusal: the requested one's).
    index: int

    @property
    def degraded(self) -> bool:
        return self.index > 0


def choose(options: Sequence[Option], room: Room, start: int = 0) -> Choice:
    """The first step from `start` on that is cached, or that may be generated
    and whose reservation fits the room."""
    for index in range(start, len(options)):
        option = options[index]
        if option.cached:
            return Choice(Action.SERVE_CACHED, index)
        if option.step.may_generate and room.fits(option.max_cost_micros):
            return Choice(Action.GENERATE, index)
    return Choice(Action.REFUSE, 0)


@dataclass(frozen=True)
class Degraded:
    """What was served instead of what was asked for, and why."""

    requested: Setting
    served: Setting
    # The ErrorInfo reason the requested image was refused with.
    reason: str
    message: str


def degraded(requested: Setting, served: Setting, reason: str, *, cached: bool) -> Degraded:
    how = "a cached image" if cached else "a new image"
    return Degraded(
        requested,
        served,
        reason,
        f"{requested.quality} {requested.size} does not fit the budget ({reason}); "
        f"served {how} at {served.quality} {served.size}",
    )
