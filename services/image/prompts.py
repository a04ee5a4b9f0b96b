"""The food-photography prompt built from a recipe context.

Short and deterministic: the same context gives the same prompt, so the exact
cache finds it again, and a short prompt costs fewer input tokens. Everything
the context could not tell is left out rather than guessed.
"""

from __future__ import annotations

from services.image.analyzer import RecipeContext
from services.image.cache import normalize_prompt

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


def build_prompt(context: RecipeContext) -> str:
    subject = context.dish or "a home-cooked dish"
    kind = " ".join(part for part in (context.cuisine, context.course) if part)
    sentence = f"Professional food photograph of {subject}"
    if kind:
        sentence += f", {_article(kind)} {kind}" if context.course else f", {kind} cuisine"
    if context.cooking_method:
        sentence += f", {context.cooking_method}"
    sentence += f", served {_SERVING.get(context.course, 'on a plate')}."
    parts = [sentence]
    if context.main_ingredients:
        parts.append(f"Made with {', '.join(context.main_ingredients)}.")
    parts.append(_STYLE)
    return normalize_prompt(" ".join(parts))[:MAX_BUILT_PROMPT_CHARS]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
