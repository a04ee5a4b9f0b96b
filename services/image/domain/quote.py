"""Quotes: what GenerateImage would do now for a request, as plain values.
BudgetService's side-effect-free check (CheckBudget with admission) arrives
as a BudgetView; `decide` turns it and the chosen degradation step into the
verdict. Plain Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.image.domain.cache_policy import Hit
from services.image.domain.degradation import Action, Choice, Degraded, Room, Setting
from services.image.recipes.analyzer import RecipeContext


@dataclass(frozen=True)
class Refusal:
    """A refusal as BudgetService would answer it: status code name, ErrorInfo
    reason and metadata, RetryInfo delay (None: none)."""

    code: str
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after: timedelta | None = None


@dataclass(frozen=True)
class WindowView:
    window: str  # "user_daily", "user_monthly", "system_daily", "system_monthly"
    limit_micros: int
    spent_micros: int
    reserved_micros: int
    remaining_micros: int
    reset_at: datetime
    limit_source: str


@dataclass(frozen=True)
class BudgetView:
    """CheckBudget's answer for an amount: the room for any amount, the money
    reason for this one, and (when asked) admission's refusals."""

    per_generation_micros: int
    windows: tuple[WindowView, ...]
    # The ErrorInfo reason the amount is refused with for money; "" when it fits.
    money_reason: str
    admit_refusal: Refusal | None = None
    reserve_refusal: Refusal | None = None
    generation_refusal: Refusal | None = None

    @property
    def room(self) -> Room:
        return Room(self.per_generation_micros, tuple(w.remaining_micros for w in self.windows))


@dataclass(frozen=True)
class QuotedWindow:
    window: WindowView
    # What is left once the quoted request is charged its expected cost.
    remaining_after_micros: int


@dataclass(frozen=True)
class Quote:
    """What GenerateImage would do now. `served` is the setting that would be
    served (the requested one when refused); `hit` the cached image, if any."""

    model: str
    prompt: str
    context: RecipeContext
    served: Setting
    hit: Hit | None
    generate: bool
    max_cost_micros: int
    expected_cost_micros: int
    per_generation_micros: int
    windows: tuple[QuotedWindow, ...]
    refusal: Refusal | None
    degraded: Degraded | None

    @property
    def cost_micros(self) -> int:
        return self.expected_cost_micros if self.generate and self.refusal is None else 0


def decide(choice: Choice, budget: BudgetView) -> Refusal | None:
    """The refusal GenerateImage would answer the choice with, in its order:
    Admit's (before any lookup), then the reservation's: a generation's rate
    rules and caps; when nothing fits, the requested reservation's own."""
    if budget.admit_refusal is not None:
        return budget.admit_refusal
    if choice.action is Action.GENERATE:
        return budget.generation_refusal
    if choice.action is Action.REFUSE:
        return budget.reserve_refusal
    return None


def windows_after(budget: BudgetView, charged_micros: int) -> tuple[QuotedWindow, ...]:
    return tuple(
        QuotedWindow(window, max(0, window.remaining_micros - charged_micros))
        for window in budget.windows
    )
