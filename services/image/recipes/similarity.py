"""When an image made for one recipe may stand in for another: the same dish.

Two recipes are candidates for each other only when the analyzer gave both the
same dish identity (a known one: never two unknown dishes) and the same
dietary tags. Among candidates the score says how alike they are: mostly the
foods they are made of, a little the course, cuisine and cooking method. The
original plan scored cuisine, course and method alone, so a beef stew and a
lamb curry that shared them matched; here those three only ever rank recipes
that are already the same dish, and cannot reach the threshold by themselves
(at most CONTEXT_WEIGHT of the score).

Plain Python, no I/O: the cache looks candidates up by match_key (an indexed
column) and ranks them with score().
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

from services.image.recipes.analyzer import RecipeContext
from services.image.recipes.lexicon import UNKNOWN

INGREDIENT_WEIGHT = 0.6
CONTEXT_WEIGHT = 1.0 - INGREDIENT_WEIGHT
# What the ingredients score when neither recipe lists any: not known to
# differ, not known to agree. With one list empty they score 0.
NO_INGREDIENTS = 0.5
# The default threshold: a score this high needs most foods in common (with
# every other field agreeing, at least 7 in 12 of them; see the README).
DEFAULT_THRESHOLD = 0.8


def match_key(model: str, size: str, context: RecipeContext) -> str | None:
    """The index key of the images this context may reuse: same model, size, dish
    identity and dietary tags. None when the dish is unknown: never matched."""
    if not context.dish_identity:
        return None
    canonical = json.dumps(
        {
            "diet": sorted(context.dietary_tags),
            "dish": context.dish_identity,
            "foods": sorted(context.signature_foods),
            "model": model.strip().lower(),
            "size": size.strip().lower(),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def same_dish(a: RecipeContext, b: RecipeContext) -> bool:
    return (
        bool(a.dish_identity)
        and a.dish_identity == b.dish_identity
        and tuple(sorted(a.dietary_tags)) == tuple(sorted(b.dietary_tags))
        and tuple(sorted(a.signature_foods)) == tuple(sorted(b.signature_foods))
    )


def _alike(a: str, b: str) -> bool:
    """One food names the other: "cheddar" and "cheddar cheese", "coconut milk" and
    "light coconut milk"."""
    if a == b:
        return True
    words_a, words_b = set(a.split()), set(b.split())
    return words_a <= words_b or words_b <= words_a


def ingredient_similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """Dice's coefficient over two recipes' foods, a food counting as shared
    when the other recipe has it or names it more or less precisely."""
    if not a and not b:
        return NO_INGREDIENTS
    if not a or not b:
        return 0.0
    shared_a = sum(1 for food in a if any(_alike(food, other) for other in b))
    shared_b = sum(1 for food in b if any(_alike(food, other) for other in a))
    return (shared_a + shared_b) / (len(a) + len(b))


def _agreement(a: str, b: str) -> float:
    if a == UNKNOWN or b == UNKNOWN:
        return 0.5 if a != b else 1.0
    return 1.0 if a == b else 0.0


def score(a: RecipeContext, b: RecipeContext) -> float:
    """How alike two recipes are, in [0, 1]; 0 unless they are the same dish."""
    if not same_dish(a, b):
        return 0.0
    context = (
        _agreement(a.course, b.course)
        + _agreement(a.cuisine, b.cuisine)
        + _agreement(a.cooking_method, b.cooking_method)
    ) / 3
    value = (
        INGREDIENT_WEIGHT * ingredient_similarity(a.defining_ingredients, b.defining_ingredients)
        + CONTEXT_WEIGHT * context
    )
    # Rounded so that a score and the threshold compare the same way everywhere.
    return math.floor(min(1.0, max(0.0, value)) * 10_000) / 10_000


def effective_threshold(default: float, requested: float) -> float:
    """The caller may tighten the threshold, never loosen it: 0 means the default."""
    return max(default, requested)
