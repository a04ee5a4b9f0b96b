"""The built prompt and the exact cache key: plain functions."""

from __future__ import annotations

import pytest

from services.common.prices import load_price_table
from services.image.domain.cache_policy import cache_key
from services.image.recipes.analyzer import Recipe, RecipeContext, analyze
from services.image.recipes.prompts import MAX_BUILT_PROMPT_CHARS, build_prompt, normalize_prompt
from tests.image.conftest import plain_recipe
from tests.image.test_analyzer import SOUP, real_recipes


def test_the_built_prompt_is_deterministic_short_and_about_the_dish() -> None:
    prompt = build_prompt(analyze(SOUP))
    assert prompt == build_prompt(analyze(SOUP))
    assert prompt == (
        "Professional food photograph of broccoli soup with coconut milk, a soup, "
        "simmered, served in a bowl. Made with coconut milk, broccoli, tofu. Vegan: no meat, "
        "fish, dairy or eggs. Natural soft window light, shallow depth of field, appetizing "
        "and realistic, styled for a cookbook. No text, no people, no hands."
    )
    assert "salt" not in prompt and "water" not in prompt


def test_what_the_analyzer_could_not_tell_is_left_out() -> None:
    prompt = build_prompt(RecipeContext(dish="ropa vieja"))
    assert prompt.startswith("Professional food photograph of ropa vieja, served on a plate.")
    assert "unknown" not in prompt
    assert build_prompt(RecipeContext(dish="")).startswith(
        "Professional food photograph of a home-cooked dish"
    )


def test_a_vegetarian_recipe_says_so() -> None:
    prompt = build_prompt(RecipeContext(dish="lasagna", dietary_tags=("vegetarian",)))
    assert "Vegetarian: no meat or fish." in prompt


def test_the_built_prompt_stays_short_for_the_longest_inputs() -> None:
    huge = Recipe(
        title="Extraordinary " * 21,
        ingredients=tuple(f"1 cup {'x' * 490} {i}" for i in range(100)),
        instructions=("bake " * 400,),
        categories=("Dessert",) * 20,
        cuisine="Italian",
    )
    prompt = build_prompt(analyze(huge))
    assert len(prompt) <= MAX_BUILT_PROMPT_CHARS
    assert prompt.startswith("Professional food photograph of extraordinary")
    assert ", an Italian dessert, baked," in prompt


@pytest.mark.parametrize("limit", [40, 1000, 32_000])
def test_the_built_prompt_fits_the_models_limit(limit: int) -> None:
    prompt = build_prompt(analyze(SOUP), limit)
    assert len(prompt) <= min(limit, MAX_BUILT_PROMPT_CHARS)


def test_every_model_in_the_price_table_takes_the_longest_built_prompt() -> None:
    for price in load_price_table().models.values():
        assert price.max_prompt_chars >= MAX_BUILT_PROMPT_CHARS, price.name


def test_real_recipes_give_short_deterministic_prompts() -> None:
    prompts = set()
    for raw in real_recipes():
        recipe = plain_recipe(raw)
        prompt = build_prompt(analyze(recipe))
        assert prompt == build_prompt(analyze(recipe))
        assert 60 < len(prompt) <= MAX_BUILT_PROMPT_CHARS
        prompts.add(prompt)
    assert len(prompts) > 800  # different recipes, different prompts


def test_the_cache_key_normalizes_case_and_whitespace_but_not_the_choice() -> None:
    key = cache_key("gpt-image-2", "1024x1024", "medium", "A bowl of soup")
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == cache_key(" GPT-Image-2 ", "1024X1024", "Medium", "  A  bowl of\nsoup ")
    assert key != cache_key("gpt-image-2", "1024x1536", "medium", "A bowl of soup")
    assert key != cache_key("gpt-image-2", "1024x1024", "high", "A bowl of soup")
    assert key != cache_key("gpt-image-1.5", "1024x1024", "medium", "A bowl of soup")
    assert key != cache_key("gpt-image-2", "1024x1024", "medium", "A bowl of Soup")
    # The fields are delimited: moving text between them changes the key.
    assert cache_key("a", "b", "c", "d e") != cache_key("a", "b", "c d", "e")


def test_prompt_normalization_is_nfc_and_single_spaces() -> None:
    assert normalize_prompt("  cafe\u0301 \t au\n lait ") == "caf\u00e9 au lait"
