"""Same dish or not: the similarity score, the cache policy, and the labelled
same-dish and different-dish pairs of tests/fixtures/dish_pairs.json. Plain
functions; the same pairs go through the running services in test_replay.py."""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest

from services.image.domain.cache_policy import (
    Candidate,
    best_similar,
    cost_saved,
    quality_rank,
    serves_quality,
)
from services.image.recipes.analyzer import Recipe, RecipeContext, analyze
from services.image.recipes.similarity import (
    DEFAULT_THRESHOLD,
    effective_threshold,
    forbidden,
    ingredient_similarity,
    match_key,
    same_dish,
    score,
)
from services.image.settings import DEFAULT_MODEL, ImageSettings
from tests.image.conftest import DISH_REPORT, dish_pairs

PAIRS = dish_pairs()
THRESHOLD = ImageSettings.from_env({}).similarity_threshold


def context(**fields: object) -> RecipeContext:
    base = {
        "dish": "beef stew",
        "dish_identity": "beef stew",
        "cuisine": "French",
        "course": "main course",
        "main_ingredients": ("beef", "carrot", "potato"),
        "defining_ingredients": ("beef", "carrot", "potato", "red wine"),
        "cooking_method": "braised",
        "complexity": "moderate",
        "dietary_tags": ("dairy-free",),
        "signature_foods": (),
    }
    return RecipeContext(**{**base, **fields})  # type: ignore[arg-type]


def test_the_original_plans_failure_cannot_happen_cuisine_course_and_method_are_not_a_dish() -> (
    None
):
    # Same cuisine, course, cooking method, and even the same foods: another dish.
    stew = context()
    curry = context(dish="lamb curry", dish_identity="curry lamb")
    assert not same_dish(stew, curry)
    assert score(stew, curry) == 0.0
    # And the most a matching cuisine, course and method can add is below any threshold.
    nothing_shared = context(defining_ingredients=("quinoa", "tofu"))
    assert score(stew, nothing_shared) < DEFAULT_THRESHOLD < THRESHOLD + 0.3


def test_an_unknown_dish_matches_nothing_not_even_itself() -> None:
    unknown = context(dish_identity="")
    assert match_key(DEFAULT_MODEL, "1024x1024", unknown) is None
    assert not same_dish(unknown, unknown)
    assert score(unknown, unknown) == 0.0


def test_the_stated_variant_and_signature_foods_are_part_of_the_dish() -> None:
    stew = context()
    assert score(stew, stew) == 1.0
    assert score(stew, context(variant_tags=("vegan", "vegetarian"))) == 0.0
    assert score(stew, context(signature_foods=("spinach",))) == 0.0
    keys = {
        match_key(DEFAULT_MODEL, "1024x1024", c)
        for c in (
            stew,
            context(variant_tags=("gluten-free",)),
            context(signature_foods=("kale",)),
            context(dish_identity="stew"),
        )
    }
    assert len(keys) == 4
    assert match_key(DEFAULT_MODEL, "1024x1024", stew) != match_key(
        DEFAULT_MODEL, "1024x1536", stew
    )
    assert match_key(DEFAULT_MODEL, "1024x1024", stew) != match_key("other", "1024x1024", stew)
    # Quality is not in the key: a better image of the same dish is a candidate.
    assert match_key(DEFAULT_MODEL, "1024x1024", stew) == match_key(
        f" {DEFAULT_MODEL.upper()} ", "1024X1024", stew
    )


def test_tags_one_side_inferred_split_nothing() -> None:
    # One recipe's ingredients read as dairy-free and gluten-free, the other's not.
    stew = context()
    inferred = context(dietary_tags=("dairy-free", "gluten-free"))
    assert same_dish(stew, inferred) and score(stew, inferred) == 1.0
    assert match_key(DEFAULT_MODEL, "1024x1024", stew) == match_key(
        DEFAULT_MODEL, "1024x1024", inferred
    )


def test_a_vegetarian_or_vegan_promise_is_never_served_what_it_forbids() -> None:
    meat = context(animal_foods=("meat",), dietary_tags=())
    unread = context(animal_foods=(), dietary_tags=())  # ingredients it could not read
    # Known vegetarian (stated or read from every ingredient): never a meat picture.
    read_vegetarian = context(animal_foods=(), dietary_tags=("vegetarian",))
    assert not same_dish(read_vegetarian, meat) and not same_dish(meat, read_vegetarian)
    assert same_dish(read_vegetarian, unread)  # unknown is not a conflict
    # Stated vegan (a label, a title): no dairy and no eggs either.
    vegan = context(animal_foods=(), dietary_tags=("vegan", "vegetarian"), stated_tags=("vegan",))
    for shown in ("dairy", "egg", "meat"):
        assert score(vegan, context(animal_foods=(shown,), dietary_tags=())) == 0.0, shown
    assert same_dish(vegan, unread)
    # Read as vegan, not promised: butter in the other recipe's cake is not a picture.
    read_vegan = context(animal_foods=(), dietary_tags=("vegan", "vegetarian"))
    assert same_dish(read_vegan, context(animal_foods=("dairy", "egg"), dietary_tags=()))
    assert not same_dish(read_vegan, meat)
    # A label its own list contradicts ("Vegetarian" on a shrimp risotto) promises nothing.
    mislabelled = context(animal_foods=("meat",), dietary_tags=("vegetarian",))
    assert forbidden(mislabelled) == set() and same_dish(mislabelled, meat)


def test_an_entry_of_an_older_key_version_is_never_matched() -> None:
    old = context(identity_version=1)
    assert match_key(DEFAULT_MODEL, "1024x1024", old) is None
    assert not same_dish(old, context()) and not same_dish(context(), old)
    # The key of version 1 (diet, dish, foods, model, size) is never a key of now.
    stew = context()
    version_1 = hashlib.sha256(
        json.dumps(
            {
                "diet": sorted(stew.dietary_tags),
                "dish": stew.dish_identity,
                "foods": [],
                "model": DEFAULT_MODEL.lower(),
                "size": "1024x1024",
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    ).hexdigest()
    assert match_key(DEFAULT_MODEL, "1024x1024", stew) != version_1
    assert match_key(DEFAULT_MODEL, "1024x1024", context(dietary_tags=())) != version_1
    # A context stored before versions reads as version 1.
    stored = {k: v for k, v in context().to_json().items() if k != "identity_version"}
    assert RecipeContext.from_json(stored).identity_version == 1
    assert RecipeContext.from_json(context().to_json()) == context()


def test_the_score_is_a_base_for_the_dish_then_mostly_the_shared_foods() -> None:
    stew = context()
    assert ingredient_similarity(("beef", "carrot"), ("beef", "carrot")) == 1.0
    assert ingredient_similarity(("cheddar",), ("cheddar cheese",)) == 1.0
    assert ingredient_similarity(("cheddar cheese",), ("farmer cheese",)) == 0.5
    assert ingredient_similarity(("beef fillet",), ("salmon",)) == 0.0
    assert ingredient_similarity(("beef",), ()) == 0.5  # a list it cannot read: unknown
    assert ingredient_similarity((), ()) == 0.5
    half = context(defining_ingredients=("beef", "carrot", "celery", "onion"))
    assert score(stew, half) == pytest.approx(0.35 + 0.45 * 0.5 + 0.2, abs=1e-4)
    other_method = context(cooking_method="slow-cooked", cuisine="unknown")
    assert score(stew, other_method) == pytest.approx(0.8 + 0.2 * (1 + 0.5 + 0) / 3, abs=1e-4)
    # Without a food in common, even a perfect context stays below the default.
    assert score(stew, context(defining_ingredients=("quinoa",))) < THRESHOLD


def test_the_threshold_can_be_tightened_never_loosened() -> None:
    assert effective_threshold(0.6, 0.0) == 0.6
    assert effective_threshold(0.6, 0.3) == 0.6
    assert effective_threshold(0.6, 0.9) == 0.9


def test_qualities_are_ordered_and_a_better_one_serves_a_lower_one() -> None:
    assert quality_rank("low") < quality_rank("medium") < quality_rank("high")
    assert quality_rank("standard") == quality_rank("medium")
    assert quality_rank("whatever") == 0
    assert serves_quality(quality_rank("high"), quality_rank("medium"))
    assert serves_quality(quality_rank("medium"), quality_rank("medium"))
    assert not serves_quality(quality_rank("low"), quality_rank("medium"))
    assert not serves_quality(quality_rank("high"), 0)  # an unknown quality: exact only


def test_the_cost_saved_is_what_this_request_would_have_cost() -> None:
    assert cost_saved("medium", 13_455, "medium", 13_170) == 13_455  # the same request again
    assert cost_saved("high", 50_000, "medium", 13_170) == 13_170  # a better image served


def test_the_best_candidate_wins_then_the_nearest_quality_then_the_newest() -> None:
    me = context()
    close = context(defining_ingredients=("beef", "carrot", "potato", "thyme"))
    candidates = [
        Candidate(1, quality_rank("high"), close, 1),
        Candidate(2, quality_rank("medium"), close, 2),
        Candidate(3, quality_rank("medium"), close, 3),
        Candidate(4, quality_rank("low"), me, 4),  # the best match, but too low a quality
        Candidate(5, quality_rank("high"), context(dish_identity="stew"), 5),  # another dish
    ]
    choice = best_similar(candidates, me, quality_rank("medium"), 0.6)
    assert choice is not None and choice.entry_id == 3
    assert choice.similarity == score(me, close)
    assert best_similar(candidates, me, quality_rank("medium"), 0.99) is None
    assert best_similar([], me, quality_rank("medium"), 0.6) is None


# ---- the labelled pairs --------------------------------------------------------------


def analyzed(key: str) -> RecipeContext:
    return analyze(PAIRS.recipes[key])


def test_the_labelled_set_is_big_enough_to_mean_something() -> None:
    assert len(PAIRS.same) >= 60 and len(PAIRS.different) >= 130
    labelled = {frozenset((a, b)) for a, b, _ in PAIRS.same + PAIRS.different}
    assert len(labelled) == len(PAIRS.same) + len(PAIRS.different)  # no pair is both


@pytest.mark.parametrize(("a", "b", "why"), PAIRS.different, ids=[p[2] for p in PAIRS.different])
def test_no_different_dish_pair_matches(a: str, b: str, why: str) -> None:
    first, second = analyzed(a), analyzed(b)
    similarity = max(score(first, second), score(second, first))
    assert similarity < THRESHOLD, f"{PAIRS.recipes[a].title!r} ~ {PAIRS.recipes[b].title!r}"
    # Not at a tightened threshold's floor either: the score of another dish is 0.
    assert similarity == 0.0


def test_the_score_is_symmetric_on_every_labelled_pair() -> None:
    for a, b, _ in PAIRS.same + PAIRS.different:
        assert score(analyzed(a), analyzed(b)) == score(analyzed(b), analyzed(a))


def test_most_same_dish_pairs_match_and_no_different_dish_pair_does() -> None:
    matched = [(a, b) for a, b, _ in PAIRS.same if score(analyzed(a), analyzed(b)) >= THRESHOLD]
    missed = [
        f"{PAIRS.recipes[a].title!r} / {PAIRS.recipes[b].title!r} ({why})"
        for a, b, why in PAIRS.same
        if (a, b) not in matched
    ]
    wrong = [(a, b) for a, b, _ in PAIRS.different if score(analyzed(a), analyzed(b)) > 0.0]
    recall = len(matched) / len(PAIRS.same)
    line = (
        f"same-dish recall {len(matched)}/{len(PAIRS.same)} = {recall:.0%} at threshold "
        f"{THRESHOLD}; different-dish pairs matched {len(wrong)}/{len(PAIRS.different)}"
    )
    print(line, *(f"  missed: {m}" for m in missed), sep="\n")
    DISH_REPORT[:] = [line, *(f"  missed: {m}" for m in missed)]
    assert wrong == []
    # A missed reuse costs cents, a wrong photo more; but reuse across sites,
    # languages and praise is where the cache saves.
    assert recall >= 0.75, missed


def test_no_two_unrelated_fixture_recipes_match_unless_labelled_same() -> None:
    """Every pair of fixture recipes not labelled "same" stays below the threshold."""
    same = {frozenset((a, b)) for a, b, _ in PAIRS.same}
    contexts = {key: analyzed(key) for key in PAIRS.recipes}
    unexpected = [
        (PAIRS.recipes[a].title, PAIRS.recipes[b].title)
        for a, b in itertools.combinations(sorted(contexts), 2)
        if frozenset((a, b)) not in same and score(contexts[a], contexts[b]) >= THRESHOLD
    ]
    assert unexpected == []


def test_a_recipe_matches_itself_unless_it_shows_no_food_at_all() -> None:
    for key, recipe in PAIRS.recipes.items():
        mine = analyze(recipe)
        again = analyze(Recipe(**recipe.__dict__))
        if not mine.dish_identity:
            assert score(mine, again) == 0.0, key
        elif mine.defining_ingredients:
            assert score(mine, again) == 1.0, key
        else:  # only butter, flour and sugar: nothing says what the photo shows
            assert score(mine, again) == pytest.approx(0.775, abs=1e-3), key


def _original_plan_score(a: RecipeContext, b: RecipeContext) -> float:
    """phase-4-cost-management.md's calculateContextSimilarity, for comparison."""
    shared = set(a.main_ingredients) & set(b.main_ingredients)
    overlap = len(shared) / max(len(set(a.main_ingredients) | set(b.main_ingredients)), 1)
    return (
        0.4 * (a.cuisine == b.cuisine)
        + 0.3 * (a.course == b.course)
        + 0.2 * overlap
        + 0.1 * (a.cooking_method == b.cooking_method)
    )


def test_labelled_different_dishes_the_original_plan_would_have_matched_do_not_match() -> None:
    caught = [
        (PAIRS.recipes[a].title, PAIRS.recipes[b].title)
        for a, b, _ in PAIRS.different
        if _original_plan_score(analyzed(a), analyzed(b)) >= 0.8
    ]
    # The labelled set holds the original plan's failure: different dishes it matched.
    assert len(caught) >= 5, caught
    for a, b, _ in PAIRS.different:
        if _original_plan_score(analyzed(a), analyzed(b)) >= 0.8:
            assert score(analyzed(a), analyzed(b)) == 0.0
