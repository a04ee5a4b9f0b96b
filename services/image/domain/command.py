"""The GenerateImage command and its input rules: every bad field named, the
model's options checked against the price table, defaults filled in. Nothing
here touches money."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.common.errors import FailedPrecondition, Violations
from services.common.prices import (
    ModelPrice,
    PriceTable,
    RetiredModelError,
    UnknownModelError,
    UnsupportedOptionError,
)
from services.image.domain.degradation import (
    NO_DEGRADATION,
    DegradationPolicy,
    Setting,
    check_policy,
)
from services.image.recipes.analyzer import Recipe
from services.image.recipes.prompts import normalize_prompt

MAX_TITLE_CHARS = 300
MAX_RECIPE_ID_CHARS = 200
MAX_REQUEST_ID_CHARS = 200
MAX_CUISINE_CHARS = 100
# (field, most items, most characters an item)
LIST_LIMITS = (
    ("ingredients", 100, 500),
    ("instructions", 100, 2000),
    ("categories", 20, 100),
)


@dataclass(frozen=True)
class Defaults:
    model: str
    size: str
    quality: str


@dataclass(frozen=True)
class GenerateCommand:
    """A GenerateImage request in plain values; empty strings mean "not given"."""

    user_id: str
    recipe: Recipe
    model: str = ""
    size: str = ""
    quality: str = ""
    prompt: str = ""
    request_id: str = ""
    allow_similar: bool = False
    # 0 means the service's threshold; a caller may only raise it.
    min_similarity: float = 0.0
    degradation: DegradationPolicy = NO_DEGRADATION


@dataclass(frozen=True)
class ValidRequest:
    price: ModelPrice
    model: str
    size: str
    quality: str
    # The caller's prompt, normalized; empty when the prompt is to be built.
    prompt: str
    # The caller's request id; empty when a new one is to be made.
    request_id: str
    allow_similar: bool = False
    min_similarity: float = 0.0
    degradation: DegradationPolicy = NO_DEGRADATION

    @property
    def setting(self) -> Setting:
        return Setting(self.quality, self.size)


def validate(
    command: GenerateCommand, prices: PriceTable, defaults: Defaults, today: dt.date
) -> ValidRequest:
    """The request with defaults filled in, or InvalidArgument naming every bad field;
    FailedPrecondition MODEL_RETIRED for a retired model."""
    violations = Violations()
    _check_recipe(violations, command.recipe)
    prompt = normalize_prompt(command.prompt)
    if not command.recipe.title.strip() and not prompt:
        violations.add("recipe.title", "required unless a prompt is given")
    request_id = command.request_id.strip()
    if not (0.0 <= command.min_similarity <= 1.0):  # NaN fails this too
        violations.add("min_similarity", "must be between 0 and 1")
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        violations.add("request_id", f"at most {MAX_REQUEST_ID_CHARS} characters")

    model = command.model.strip() or defaults.model
    size = command.size.strip().lower() or defaults.size
    quality = command.quality or defaults.quality
    price: ModelPrice | None = None
    retired: RetiredModelError | None = None
    try:
        price = prices.require_available(model, on=today)
    except UnknownModelError:
        violations.add("model", f"{model!r} is not a known image model")
    except RetiredModelError as exc:
        retired = exc

    if price is not None:
        _check_options(violations, price, command, size, quality)
        if size in price.sizes and quality in price.qualities:
            check_policy(
                violations,
                command.degradation,
                Setting(quality, size),
                price.qualities,
                price.sizes,
            )
        if len(prompt) > price.max_prompt_chars:
            violations.add(
                "prompt", f"at most {price.max_prompt_chars} characters for model {model}"
            )
    violations.raise_if_any()
    if retired is not None:
        raise FailedPrecondition(
            str(retired),
            "MODEL_RETIRED",
            {
                "model": model,
                "retired_on": retired.retired_on.isoformat() if retired.retired_on else "",
                "replacement": retired.replacement or "",
            },
        )
    assert price is not None
    return ValidRequest(
        price=price,
        model=model,
        size=size,
        quality=quality,
        prompt=prompt,
        request_id=request_id,
        allow_similar=command.allow_similar,
        min_similarity=command.min_similarity,
        degradation=command.degradation,
    )


def _check_recipe(violations: Violations, recipe: Recipe) -> None:
    if len(recipe.title) > MAX_TITLE_CHARS:
        violations.add("recipe.title", f"at most {MAX_TITLE_CHARS} characters")
    if len(recipe.recipe_id) > MAX_RECIPE_ID_CHARS:
        violations.add("recipe.recipe_id", f"at most {MAX_RECIPE_ID_CHARS} characters")
    if len(recipe.cuisine) > MAX_CUISINE_CHARS:
        violations.add("recipe.cuisine", f"at most {MAX_CUISINE_CHARS} characters")
    for name, most_items, most_chars in LIST_LIMITS:
        items = getattr(recipe, name)
        if len(items) > most_items:
            violations.add(f"recipe.{name}", f"at most {most_items} items")
            continue
        for index, item in enumerate(items):
            if len(item) > most_chars:
                violations.add(f"recipe.{name}[{index}]", f"at most {most_chars} characters")


def _check_options(
    violations: Violations, price: ModelPrice, command: GenerateCommand, size: str, quality: str
) -> None:
    options_ok = True
    if size not in price.sizes:
        options_ok = False
        given = "" if command.size.strip() else "the default "
        violations.add(
            "size",
            f"{given}{size!r} is not offered by model {price.name}; "
            f"expected one of {', '.join(price.sizes)}",
        )
    if quality not in price.qualities:
        options_ok = False
        given = "" if command.quality else "the default "
        violations.add(
            "quality",
            f"{given}{quality!r} is not offered by model {price.name}; "
            f"expected one of {', '.join(price.qualities)}",
        )
    if options_ok:
        try:
            price.per_image_micros(quality, size)
        except UnsupportedOptionError as exc:
            violations.add(exc.field, str(exc))
