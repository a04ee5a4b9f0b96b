"""Recipe analysis, the built prompt and the exact cache key: plain functions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from services.image.analyzer import Recipe, analyze, dish_name, ingredient_name
from services.image.cache import cache_key, normalize_prompt
from services.image.prompts import MAX_BUILT_PROMPT_CHARS, build_prompt

RECIPES = Path(__file__).resolve().parents[3] / "shared" / "data" / "recipes-dev.jsonl"

SOUP = Recipe(
    title="Broccoli Soup with Coconut Milk",
    ingredients=(
        "1 14- ounce can of full fat coconut milk",
        "3 cloves garlic, smashed",
        "2 teaspoons fine grain sea salt",
        "4 1/2 cups water",
        "2-3 large heads of broccoli (~1 1/2 lb.), cut into small florets",
        "to serve: lots of pan-fried tofu cubes, toasted almonds",
    ),
    instructions=(
        "Add it to a large pan over medium-high heat. Sauté for a couple minutes.",
        "Bring to a simmer before adding the broccoli. Simmer until tender.",
        "Puree with an immersion blender.",
    ),
    categories=("Lunch", "Soup"),
    cuisine="California,Easy,Vegan,Vegetarian",
)


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("1 14- ounce can of full fat coconut milk", "coconut milk"),
        ("3 cloves garlic, smashed", "garlic"),
        ("2-3 large heads of broccoli (~1 1/2 lb.), cut into small florets", "broccoli"),
        ("½ cup freshly grated parmesan", "parmesan"),
        ("to serve: lots of pan-fried tofu cubes", "lots of pan-fried tofu cubes"),
        ("200 g spaghetti", "spaghetti"),
        ("Salt", "salt"),
    ],
)
def test_ingredient_lines_reduce_to_the_food(line: str, name: str) -> None:
    assert ingredient_name(line) == name


@pytest.mark.parametrize(
    ("title", "dish"),
    [
        ("My Favorite Pumpkin Bread (Kabocha + Dark Chocolate)", "pumpkin bread"),
        ("The Best Vegan Chocolate Cake Recipe", "vegan chocolate cake"),
        ("Easy", "easy"),  # nothing but praise: kept as written
        ("Tourte fine à l'agneau", "tourte fine à l'agneau"),
    ],
)
def test_the_dish_is_the_title_without_praise(title: str, dish: str) -> None:
    assert dish_name(title) == dish


def test_analysis_reads_course_method_and_main_ingredients_and_leaves_out_staples() -> None:
    context = analyze(SOUP)
    assert context.dish == "broccoli soup with coconut milk"
    assert context.course == "soup"
    assert context.cuisine == ""  # "California,Easy,Vegan" names no cuisine it knows
    assert context.cooking_method == "simmered"
    assert context.main_ingredients == (
        "coconut milk",
        "garlic",
        "broccoli",
        "lots of pan-fried tofu cubes",
    )


def test_cuisine_comes_from_the_label_first_then_from_telling_words() -> None:
    assert analyze(Recipe(title="Chicken Pho", cuisine="Vietnamese")).cuisine == "Vietnamese"
    assert analyze(Recipe(title="Weeknight Tacos")).cuisine == "Mexican"
    # One telling ingredient is not enough; two are.
    assert analyze(Recipe(title="Bowl", ingredients=("1 cup feta",))).cuisine == ""
    bowl = Recipe(title="Bowl", ingredients=("1 cup feta", "tzatziki"))
    assert analyze(bowl).cuisine == "Greek"


def test_the_title_names_the_method_before_the_instructions_do() -> None:
    recipe = Recipe(title="Grilled Corn", instructions=("Bake it. Then bake again.",))
    assert analyze(recipe).cooking_method == "grilled"
    assert analyze(
        Recipe(title="Corn", instructions=("Bake it. Then bake again.",))
    ).cooking_method == ("baked")


def test_the_built_prompt_is_deterministic_short_and_about_the_dish() -> None:
    prompt = build_prompt(analyze(SOUP))
    assert prompt == build_prompt(analyze(SOUP))
    assert prompt == (
        "Professional food photograph of broccoli soup with coconut milk, a soup, simmered, "
        "served in a bowl. Made with coconut milk, garlic, broccoli, lots of pan-fried tofu "
        "cubes. Natural soft window light, shallow depth of field, appetizing and realistic, "
        "styled for a cookbook. No text, no people, no hands."
    )
    assert "salt" not in prompt and "water" not in prompt


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


def labels(value: object) -> tuple[str, ...]:
    """The sample's labels: a comma-separated string, a list, or nothing."""
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return tuple(str(value or "").split(","))


def test_real_recipes_give_short_deterministic_prompts() -> None:
    if not RECIPES.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{RECIPES} is missing")
        pytest.skip(f"{RECIPES} is missing (the shared recipe sample)")
    prompts = set()
    for line in RECIPES.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        recipe = Recipe(
            title=raw["title"] or "",
            ingredients=tuple(raw.get("ingredients") or ()),
            instructions=tuple(raw.get("instructions") or ()),
            categories=labels(raw.get("category")),
            cuisine=",".join(labels(raw.get("cuisine"))),
        )
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
