"""GenerateImage's input rules against the shipped price table."""

from __future__ import annotations

import datetime as dt

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.prices import PriceTable, load_price_table
from services.image.domain.command import Defaults, GenerateCommand, validate
from services.image.recipes.analyzer import Recipe
from services.image.settings import DEFAULT_MODEL

DEFAULTS = Defaults(DEFAULT_MODEL, "1024x1024", "medium")
TODAY = dt.date(2026, 11, 24)


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return load_price_table()


def command(**fields: object) -> GenerateCommand:
    fields.setdefault("recipe", Recipe(title="Tomato soup"))
    return GenerateCommand(user_id="u1", **fields)  # type: ignore[arg-type]


def violations(prices: PriceTable, **fields: object) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as raised:
        validate(command(**fields), prices, DEFAULTS, TODAY)
    return {v.field: v.description for v in raised.value.violations}


def test_empty_options_take_the_defaults(prices: PriceTable) -> None:
    request = validate(command(), prices, DEFAULTS, TODAY)
    assert (request.model, request.size, request.quality) == (DEFAULT_MODEL, "1024x1024", "medium")
    assert (request.prompt, request.request_id) == ("", "")
    assert request.price.name == DEFAULT_MODEL


def test_given_options_are_normalized(prices: PriceTable) -> None:
    request = validate(
        command(
            model=" gpt-image-2 ",
            size="1536X1024",
            quality="high",
            prompt=" a  b ",
            request_id=" r1 ",
        ),
        prices,
        DEFAULTS,
        TODAY,
    )
    assert (request.model, request.size, request.quality) == ("gpt-image-2", "1536x1024", "high")
    assert (request.prompt, request.request_id) == ("a b", "r1")


def test_the_default_model_fits_the_free_tiers_per_generation_limit(prices: PriceTable) -> None:
    price = prices.require_available(DEFAULT_MODEL, on=TODAY)
    assert price.status == "active"
    for quality in ("low", "medium"):
        assert price.max_cost_micros(quality, "1024x1024", 1000) <= 80_000
    active = [p for p in prices.models.values() if p.status == "active"]
    cheapest = min(p.per_image_micros("medium", "1024x1024") for p in active)
    assert price.per_image_micros("medium", "1024x1024") == cheapest


def test_a_title_or_a_prompt_is_required(prices: PriceTable) -> None:
    assert violations(prices, recipe=Recipe(title="  ")) == {
        "recipe.title": "required unless a prompt is given"
    }
    assert validate(command(recipe=Recipe(), prompt="a photo of soup"), prices, DEFAULTS, TODAY)


def test_every_bad_field_is_named_at_once(prices: PriceTable) -> None:
    found = violations(
        prices,
        recipe=Recipe(
            title="t" * 301,
            recipe_id="r" * 201,
            cuisine="c" * 101,
            ingredients=("ok", "i" * 501),
            instructions=("s",) * 101,
            categories=("c" * 101,),
        ),
        size="640x480",
        quality="ultra",
        request_id="x" * 201,
    )
    assert set(found) == {
        "recipe.title",
        "recipe.recipe_id",
        "recipe.cuisine",
        "recipe.ingredients[1]",
        "recipe.instructions",
        "recipe.categories[0]",
        "size",
        "quality",
        "request_id",
    }
    assert "1024x1024" in found["size"] and "medium" in found["quality"]


def test_the_limits_are_inclusive(prices: PriceTable) -> None:
    recipe = Recipe(
        title="t" * 300,
        ingredients=("i" * 500,) * 100,
        instructions=("s" * 2000,) * 100,
        categories=("c" * 100,) * 20,
        cuisine="c" * 100,
        recipe_id="r" * 200,
    )
    assert validate(command(recipe=recipe, request_id="x" * 200), prices, DEFAULTS, TODAY)


def test_the_prompt_limit_is_the_models(prices: PriceTable) -> None:
    limit = prices.model(DEFAULT_MODEL).max_prompt_chars
    assert validate(command(prompt="p" * limit), prices, DEFAULTS, TODAY)
    assert set(violations(prices, prompt="p" * (limit + 1))) == {"prompt"}


def test_an_unknown_model_is_invalid(prices: PriceTable) -> None:
    assert set(violations(prices, model="gpt-image-9")) == {"model"}


def test_a_retired_model_is_a_failed_precondition_naming_its_replacement(
    prices: PriceTable,
) -> None:
    # Even with a quality the retired model never had: the retirement is the news.
    with pytest.raises(FailedPrecondition) as raised:
        validate(command(model="dall-e-3", quality="medium"), prices, DEFAULTS, TODAY)
    assert raised.value.info.reason == "MODEL_RETIRED"
    assert raised.value.info.metadata == {
        "model": "dall-e-3",
        "retired_on": "2026-05-12",
        "replacement": "gpt-image-2.5-sunburst",
    }


def test_a_deprecated_model_is_refused_from_its_shutdown_date(prices: PriceTable) -> None:
    assert validate(command(model="gpt-image-1.5"), prices, DEFAULTS, dt.date(2026, 11, 30))
    with pytest.raises(FailedPrecondition) as raised:
        validate(command(model="gpt-image-1.5"), prices, DEFAULTS, dt.date(2026, 12, 1))
    assert raised.value.info.metadata["retired_on"] == "2026-12-01"


def test_bad_fields_come_before_a_retired_model(prices: PriceTable) -> None:
    assert set(violations(prices, model="dall-e-2", request_id="x" * 201)) == {"request_id"}


def test_a_default_the_chosen_model_lacks_is_named_as_the_default(prices: PriceTable) -> None:
    defaults = Defaults(DEFAULT_MODEL, "1792x1024", "medium")
    with pytest.raises(InvalidArgument) as raised:
        validate(command(model="gpt-image-2"), prices, defaults, TODAY)
    [violation] = raised.value.violations
    assert violation.field == "size"
    assert violation.description.startswith("the default '1792x1024' is not offered")
