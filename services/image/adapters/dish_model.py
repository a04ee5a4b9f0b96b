"""The optional dish model: OpenAI's chat completions with a JSON-schema
response format, asked what dish a recipe is.

A short timeout and no retries: the rules answer when the model does not, so
any failure (timeout, connection, an HTTP error, a refusal, an answer that is
not the schema) is one DishModelFailed for the caller to fall back on.
"""

from __future__ import annotations

import json
from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

from services.image.recipes.analyzer import Recipe
from services.image.recipes.model_dish import DishAnswer, Recognition

MAX_OUTPUT_TOKENS = 200
# Enough of a long recipe to tell the dish; a bound on the tokens paid for.
MAX_RECIPE_CHARS = 4000

INSTRUCTIONS = (
    "You name the dish of a recipe as it would be photographed. Answer with the "
    "canonical English name of the dish: the head dish plus only the modifiers that "
    "change the picture (chocolate in chocolate cake), never praise, brands, people or "
    "words like best, easy, homemade. Give its cuisine and the main ingredients a photo "
    "would show, in English, lower case."
)

RESPONSE_FORMAT: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {
        "name": "dish",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "dish": {"type": "string"},
                "cuisine": {"type": "string"},
                "main_ingredients": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["dish", "cuisine", "main_ingredients"],
            "additionalProperties": False,
        },
    },
}


class DishModelFailed(Exception):
    """The model gave no usable answer; the rules stand."""


class OpenAIDishModel:
    provider = "openai"

    def __init__(
        self, *, api_key: str, model: str, base_url: str | None = None, timeout_seconds: float
    ) -> None:
        self.model = model
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url or None, timeout=timeout_seconds, max_retries=0
        )

    def recognize(self, recipe: Recipe) -> Recognition:
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": recipe_text(recipe)},
        ]
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                response_format=RESPONSE_FORMAT,
                max_tokens=MAX_OUTPUT_TOKENS,
                temperature=0,
            )
        except openai.OpenAIError as exc:
            raise DishModelFailed(type(exc).__name__) from None
        return _recognition(response)

    def close(self) -> None:
        self._client.close()


def recipe_text(recipe: Recipe) -> str:
    parts = [
        f"Title: {recipe.title}",
        f"Categories: {', '.join(recipe.categories)}",
        f"Cuisine: {recipe.cuisine}",
        "Ingredients:",
        *recipe.ingredients,
        "Instructions:",
        *recipe.instructions,
    ]
    return "\n".join(parts)[:MAX_RECIPE_CHARS]


def _recognition(response: Any) -> Recognition:
    choice = response.choices[0] if response.choices else None
    message = choice.message if choice is not None else None
    if message is None or message.refusal or not message.content:
        raise DishModelFailed("refused or empty")
    try:
        raw = json.loads(message.content)
        answer = DishAnswer.cleaned(
            _text(raw["dish"]),
            _text(raw["cuisine"]),
            [_text(food) for food in raw["main_ingredients"]],
        )
    except (ValueError, KeyError, TypeError):
        raise DishModelFailed("not the schema") from None
    if not answer.dish:
        raise DishModelFailed("no dish")
    usage = response.usage
    return Recognition(
        answer,
        input_tokens=usage.prompt_tokens if usage is not None else 0,
        output_tokens=usage.completion_tokens if usage is not None else 0,
    )


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value
