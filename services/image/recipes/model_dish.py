"""A text model's answer about a recipe's dish, and the only use the rules let
it have: naming the dish of a recipe the rules could not name.

The answer never overrides a dish the rules named, and the name it gives lives
in its own namespace ("model:<name>"), so it never equals a rule-named dish:
two recipes the rules name differently, or one the rules name and one they do
not, never meet on the model's word. Everything else a similar-dish match
needs (stated variant, signature foods, the dietary promises, the score's
shared foods) is still the rules' (similarity.py). Plain Python, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

from services.image.recipes.analyzer import Recipe, RecipeContext

MODEL_PREFIX = "model:"
MAX_NAME_CHARS = 80
MAX_INGREDIENTS = 12


@dataclass(frozen=True)
class DishAnswer:
    """What the model said: the canonical dish, its cuisine and the main
    ingredients a photo would show (all lower case, trimmed)."""

    dish: str
    cuisine: str = ""
    main_ingredients: tuple[str, ...] = ()

    @classmethod
    def cleaned(cls, dish: str, cuisine: str, main_ingredients: list[str]) -> DishAnswer:
        return cls(
            _clean(dish),
            _clean(cuisine),
            tuple(_clean(food) for food in main_ingredients[:MAX_INGREDIENTS] if _clean(food)),
        )


@dataclass(frozen=True)
class Recognition:
    """One paid answer: what the model said and the tokens it reported."""

    answer: DishAnswer
    input_tokens: int
    output_tokens: int


def _clean(text: str) -> str:
    return " ".join(str(text).lower().split())[:MAX_NAME_CHARS]


def recipe_hash(recipe: Recipe) -> str:
    """SHA-256 hex of what the model reads of a recipe (not its id): the same
    recipe text is asked about once, whoever imports it."""
    canonical = json.dumps(
        [
            recipe.title,
            list(recipe.ingredients),
            list(recipe.instructions),
            list(recipe.categories),
            recipe.cuisine,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def needs_model(context: RecipeContext) -> bool:
    """The model is asked only when its answer could be used: no rule-named dish."""
    return not context.dish_identity


def refined(context: RecipeContext, answer: DishAnswer | None) -> RecipeContext:
    """The context with the model's dish as its identity when the rules gave
    none; otherwise the rules' context unchanged."""
    if answer is None or not answer.dish or not needs_model(context):
        return context
    return replace(context, dish_identity=MODEL_PREFIX + answer.dish)
