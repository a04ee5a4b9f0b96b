"""When an image made for one recipe may stand in for another: the same dish.

Two recipes are candidates for each other only when the analyzer gave both the
same canonical dish (a known one: never two unknown dishes; canonical.py), the
same dietary variant stated in the title ("Vegan Chocolate Cake" is another
dish than "Chocolate Cake") and the same signature foods, and neither breaks
the other's promise: a recipe known to be vegetarian (stated, or every
ingredient read and none meat) never shares with one whose ingredients name
meat, and a recipe stated vegan (dairy-free, egg-free) never with one whose
ingredients name dairy or eggs. Tags inferred on one side only split nothing:
an ingredient the analyzer could not read is not a conflict.

Among candidates the score says how alike they are: a base for being the same
dish, then mostly the foods they are made of, a little the course, cuisine and
cooking method. The original plan scored cuisine, course and method alone, so
a beef stew and a lamb curry that shared them matched; here those three only
ever rank recipes that are already the same dish, and with the base cannot
reach the default threshold without a food in common.

Plain Python, no I/O: the cache looks candidates up by match_key (an indexed
column) and ranks them with score().
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

from services.image.recipes.analyzer import IDENTITY_VERSION, RecipeContext
from services.image.recipes.lexicon import UNKNOWN

# The key of every context stored before this version differs: such entries are
# never similar candidates again (they still serve exact hits).
KEY_VERSION = IDENTITY_VERSION
SAME_DISH_WEIGHT = 0.35
INGREDIENT_WEIGHT = 0.45
CONTEXT_WEIGHT = 1.0 - SAME_DISH_WEIGHT - INGREDIENT_WEIGHT
# What the ingredients score when a recipe lists none the analyzer can read:
# not known to differ, not known to agree.
NO_INGREDIENTS = 0.5
# The default threshold: a score this high needs most foods in common (with
# every other field agreeing, at least 7 in 12 of them; see the README).
DEFAULT_THRESHOLD = 0.8


def match_key(model: str, size: str, context: RecipeContext) -> str | None:
    """The index key of the images this context may reuse: same model, size,
    canonical dish, stated variant and signature foods, and the key's version.
    None when the dish is unknown: never matched."""
    if not context.dish_identity or context.identity_version != KEY_VERSION:
        return None
    canonical = json.dumps(
        {
            "dish": context.dish_identity,
            "foods": sorted(context.signature_foods),
            "model": model.strip().lower(),
            "size": size.strip().lower(),
            "v": KEY_VERSION,
            "variant": sorted(context.variant_tags),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def same_dish(a: RecipeContext, b: RecipeContext) -> bool:
    return (
        bool(a.dish_identity)
        and a.identity_version == b.identity_version == KEY_VERSION
        and a.dish_identity == b.dish_identity
        and sorted(a.variant_tags) == sorted(b.variant_tags)
        and sorted(a.signature_foods) == sorted(b.signature_foods)
        and not forbidden(a) & set(b.animal_foods)
        and not forbidden(b) & set(a.animal_foods)
    )


def forbidden(context: RecipeContext) -> set[str]:
    """The animal foods a picture for this recipe must not show: meat when it is
    known to be vegetarian (stated or read), dairy and eggs when it says so.
    Not what its own list names: then the label was wrong ("Vegetarian" on a
    shrimp risotto), and the list is what the picture was made from."""
    tags, stated = set(context.dietary_tags), set(context.stated_tags)
    found: set[str] = set()
    if tags & {"vegetarian", "vegan"}:
        found.add("meat")
    if stated & {"vegan", "dairy-free"}:
        found.add("dairy")
    if stated & {"vegan", "egg-free"}:
        found.add("egg")
    return found - set(context.animal_foods)


def _alike(a: str, b: str) -> float:
    """1 when one food names the other ("cheddar" and "cheddar cheese", "coconut
    milk" and "light coconut milk"), 0.5 when both are one kind of food
    ("cheddar cheese" and "farmer cheese": in recipes already of one dish, the
    same in a photo, but not the same recipe), else 0."""
    if a == b:
        return 1.0
    words_a, words_b = a.split(), b.split()
    if set(words_a) <= set(words_b) or set(words_b) <= set(words_a):
        return 1.0
    if len(words_a) > 1 and len(words_b) > 1 and words_a[-1] == words_b[-1]:
        return 0.5
    return 0.0


def ingredient_similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """Dice's coefficient over two recipes' foods, a food counting as shared
    as far as the other recipe has it (_alike)."""
    if not a or not b:
        return NO_INGREDIENTS
    shared_a = sum(max(_alike(food, other) for other in b) for food in a)
    shared_b = sum(max(_alike(food, other) for other in a) for food in b)
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
        SAME_DISH_WEIGHT
        + INGREDIENT_WEIGHT * ingredient_similarity(a.defining_ingredients, b.defining_ingredients)
        + CONTEXT_WEIGHT * context
    )
    # Rounded so that a score and the threshold compare the same way everywhere.
    return math.floor(min(1.0, max(0.0, value)) * 10_000) / 10_000


def effective_threshold(default: float, requested: float) -> float:
    """The caller may tighten the threshold, never loosen it: 0 means the default."""
    return max(default, requested)
