"""GenerateImage's input rules: every bad field named, the model's options checked
against the price table, defaults filled in. Nothing here touches money."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument
from services.common.prices import (
    ModelPrice,
    PriceTable,
    RetiredModelError,
    UnknownModelError,
    UnsupportedOptionError,
)
from services.image.analyzer import Recipe
from services.image.cache import normalize_prompt

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


def validate(
    command: GenerateCommand, prices: PriceTable, defaults: Defaults, today: dt.date
) -> ValidRequest:
    """The request with defaults filled in, or InvalidArgument naming every bad field;
    FailedPrecondition MODEL_RETIRED for a retired model."""
    violations = _recipe_violations(command.recipe)
    prompt = normalize_prompt(command.prompt)
    if not command.recipe.title.strip() and not prompt:
        violations.append(FieldViolation("recipe.title", "required unless a prompt is given"))
    request_id = command.request_id.strip()
    if not (0.0 <= command.min_similarity <= 1.0):  # NaN fails this too
        violations.append(FieldViolation("min_similarity", "must be between 0 and 1"))
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        violations.append(
            FieldViolation("request_id", f"at most {MAX_REQUEST_ID_CHARS} characters")
        )

    model = command.model.strip() or defaults.model
    size = command.size.strip().lower() or defaults.size
    quality = command.quality or defaults.quality
    price: ModelPrice | None = None
    retired: RetiredModelError | None = None
    try:
        price = prices.require_available(model, on=today)
    except UnknownModelError:
        violations.append(FieldViolation("model", f"{model!r} is not a known image model"))
    except RetiredModelError as exc:
        retired = exc

    if price is not None:
        violations += _option_violations(price, command, size, quality)
        if len(prompt) > price.max_prompt_chars:
            violations.append(
                FieldViolation(
                    "prompt", f"at most {price.max_prompt_chars} characters for model {model}"
                )
            )
    if violations:
        raise InvalidArgument(violations)
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
    )


def _recipe_violations(recipe: Recipe) -> list[FieldViolation]:
    violations = []
    if len(recipe.title) > MAX_TITLE_CHARS:
        violations.append(FieldViolation("recipe.title", f"at most {MAX_TITLE_CHARS} characters"))
    if len(recipe.recipe_id) > MAX_RECIPE_ID_CHARS:
        violations.append(
            FieldViolation("recipe.recipe_id", f"at most {MAX_RECIPE_ID_CHARS} characters")
        )
    if len(recipe.cuisine) > MAX_CUISINE_CHARS:
        violations.append(
            FieldViolation("recipe.cuisine", f"at most {MAX_CUISINE_CHARS} characters")
        )
    for name, most_items, most_chars in LIST_LIMITS:
        items = getattr(recipe, name)
        if len(items) > most_items:
            violations.append(FieldViolation(f"recipe.{name}", f"at most {most_items} items"))
            continue
        for index, item in enumerate(items):
            if len(item) > most_chars:
                violations.append(
                    FieldViolation(f"recipe.{name}[{index}]", f"at most {most_chars} characters")
                )
    return violations


def _option_violations(
    price: ModelPrice, command: GenerateCommand, size: str, quality: str
) -> list[FieldViolation]:
    violations = []
    if size not in price.sizes:
        given = "" if command.size.strip() else "the default "
        violations.append(
            FieldViolation(
                "size",
                f"{given}{size!r} is not offered by model {price.name}; "
                f"expected one of {', '.join(price.sizes)}",
            )
        )
    if quality not in price.qualities:
        given = "" if command.quality else "the default "
        violations.append(
            FieldViolation(
                "quality",
                f"{given}{quality!r} is not offered by model {price.name}; "
                f"expected one of {', '.join(price.qualities)}",
            )
        )
    if not violations:
        try:
            price.per_image_micros(quality, size)
        except UnsupportedOptionError as exc:
            violations.append(FieldViolation(exc.field, str(exc)))
    return violations
