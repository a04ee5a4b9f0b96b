"""The food-photography prompt built from a recipe context, and the one rule
for a prompt's text (normalize_prompt): what is sent and what is keyed.

Short and deterministic: the same context gives the same prompt, so the exact
cache finds it again, and a short prompt costs fewer input tokens (they are
billed). Everything the context could not tell ("unknown") is left out rather
than guessed. A vegan or vegetarian recipe says so, so the picture shows no
meat (or dairy) the recipe does not have.
"""

from __future__ import annotations

import re
import unicodedata

from services.image.recipes.analyzer import RecipeContext
from services.image.recipes.lexicon import UNKNOWN

_WHITESPACE = re.compile(r"\s+")

# How each course is usually served; a plate otherwise.
_SERVING = {
    "drink": "in a glass",
    "soup": "in a bowl",
    "salad": "in a bowl",
    "sauce": "in a small bowl",
    "bread": "on a wooden board",
    "appetizer": "on a serving platter",
}

_STYLE = (
    "Natural soft window light, shallow depth of field, appetizing and realistic, "
    "styled for a cookbook. No text, no people, no hands."
)

# Longest possible result: dish 120 + 4 ingredients of 40 + the fixed words.
MAX_BUILT_PROMPT_CHARS = 600


def normalize_prompt(prompt: str) -> str:
    """NFC, single spaces, no leading or trailing whitespace: what is sent and what is keyed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", prompt)).strip()


def build_prompt(context: RecipeContext, max_chars: int = MAX_BUILT_PROMPT_CHARS) -> str:
    """The prompt, at most min(max_chars, MAX_BUILT_PROMPT_CHARS) characters
    (pass the model's prompt limit)."""
    subject = context.dish or "a home-cooked dish"
    cuisine = _known(context.cuisine)
    course = _known(context.course)
    kind = " ".join(part for part in (cuisine, course) if part)
    sentence = f"Professional food photograph of {subject}"
    if kind:
        sentence += f", {_article(kind)} {kind}" if course else f", {kind} cuisine"
    method = _known(context.cooking_method)
    if method:
        sentence += f", {method}"
    sentence += f", served {_SERVING.get(course, 'on a plate')}."
    parts = [sentence]
    if context.main_ingredients:
        parts.append(f"Made with {', '.join(context.main_ingredients)}.")
    if "vegan" in context.dietary_tags:
        parts.append("Vegan: no meat, fish, dairy or eggs.")
    elif "vegetarian" in context.dietary_tags:
        parts.append("Vegetarian: no meat or fish.")
    parts.append(_STYLE)
    limit = max(1, min(max_chars, MAX_BUILT_PROMPT_CHARS))
    return normalize_prompt(" ".join(parts))[:limit].strip()


def _known(value: str) -> str:
    return "" if value == UNKNOWN else value


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
