"""Ingredient lines reduced to what they name, and which foods a photo shows.

"1 14- ounce can of full fat coconut milk" is coconut milk; salt, oil and
spices are minor (no photo shows them). Pure Python.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from services.image.recipes import lexicon as lx
from services.image.recipes import text as tx

MAX_MAIN_INGREDIENTS = 4
MAX_DEFINING_INGREDIENTS = 16
MAX_INGREDIENT_CHARS = 40

_QUANTITY = re.compile(
    r"^(?:(?:about|approx\.?|approximately|around|~|\+|-|–|/|\.|,|\"|'|”|″|×|x(?=\s*\d)|\d|"
    r"[\u00bc-\u00be\u2150-\u215e]|\s)+"
    r"|to\s+(?=\d)|a\s+few\s+|a\s+couple\s+(?:of\s+)?|an?\s+|one\s+|two\s+|three\s+|four\s+|five\s+|"
    r"six\s+|half\s+|plus\s+|and\s+|or\s+|lots\s+of\s+|some\s+|several\s+)",
    re.IGNORECASE,
)
_SIZE_IN_INCHES = re.compile(r"\b\d+(?:[.,]\d+)?\s*[-\s]?\s*(?:inch|in\.|cm)(?:es)?\b", re.I)
_UNIT = re.compile(r"^(?:" + "|".join(lx.UNITS) + r")\b\.?\s*(?:of\s+)?", re.IGNORECASE)
_UNIT_WORD = re.compile(r"(?:" + "|".join(lx.UNITS) + r")\.?", re.IGNORECASE)
_DESCRIPTOR_PATTERNS = (
    *lx.DESCRIPTORS,
    *("pan[- ]fried", "to serve", "pur[ée]e?d", "unbaked", "store[- ]bought", "cooked and"),
)
_DESCRIPTORS = re.compile(
    r"(?<![\w-])(?:" + "|".join(_DESCRIPTOR_PATTERNS) + r")(?![\w-])", re.IGNORECASE
)


def literal_start(pattern: str) -> str:
    """What every match of a plain pattern (letters, [classes], ? and no
    groups) begins with: "bite[- ]sized?" -> "bite", "sizes?" -> "size"."""
    start = re.match(r"[^\[\](){}?*+|\\.^$]*", pattern)
    literal = start.group() if start else ""
    if pattern[len(literal) : len(literal) + 1] in ("?", "*", "{"):
        literal = literal[:-1]  # the letter before a quantifier may be missing
    return literal


# Descriptors are found in a line by a Scanner (text.py): the regex alone,
# tried at every position of every ingredient line, was most of reading one.
_DESCRIPTOR_WORDS = tx.Words((literal_start(p) for p in _DESCRIPTOR_PATTERNS), _DESCRIPTORS)
_DESCRIPTOR_SCANNER = tx.Scanner([_DESCRIPTOR_WORDS])
_LABEL = re.compile(r"^[^:]{0,30}:\s*")
_SERVING = re.compile(r"\bfor\s+(?:the\s+)?(?:serving|garnish|dusting|drizzling)\b")
_PARTS = re.compile(r",|;|\s+[-–]\s+(?=[^\W\d_])")
_OF_OR_TO = re.compile(r"^(?:of|to)\s+")
_NO_LETTERS = re.compile(r"[\W\d_]+")
_A_LETTER = re.compile(r"[^\W\d_]")
_FORM_WORDS = frozenset({
    "cube", "cubes", "floret", "florets", "wedge", "wedges", "slice", "slices", "piece",
    "pieces", "chunk", "chunks", "strip", "strips", "half", "halves", "leaf", "leaves",
    "sprig", "sprigs", "stalk", "stalks", "segment", "segments", "ring", "rings", "bit",
    "bits", "shaving", "shavings", "round", "rounds", "spear", "spears",
})  # fmt: skip


@functools.lru_cache(maxsize=16384)
def ingredient_name(line: str) -> str:
    """The food in an ingredient line: "1 14- ounce can of full fat coconut milk" ->
    "coconut milk". Empty when nothing is left."""
    text = tx.clean(line).lower()
    text = _LABEL.sub("", text)  # "to serve: ...", "for the sauce: ..."
    text = tx.BRACKETS.sub(" ", text)
    text = _SERVING.split(text)[0]
    # "1 1/2 pounds boneless, skinless chicken breasts, cut up": the first part
    # that still names something once the quantities and descriptors are gone.
    for part in _PARTS.split(text):
        name = _food_in(part)
        if name:
            return name
    return ""


def _food_in(text: str) -> str:
    text = _SIZE_IN_INCHES.sub(" ", text)
    for _ in range(8):  # quantities and units interleave: "1 14-ounce can of"
        before = text
        text = _QUANTITY.sub("", text).strip()
        text = _UNIT.sub("", text).strip()
        text = _OF_OR_TO.sub("", text)
        if text == before:
            break
    text = _DESCRIPTOR_WORDS.sub(" ", _DESCRIPTOR_SCANNER.scan(text))
    words = [w for w in tx.clean(text).split(" ") if w and not _NO_LETTERS.fullmatch(w)]
    while words and words[0] in tx.FILLER:
        words.pop(0)
    # "1 stick butter 110 gr": a measure after the food is not the food.
    while words and (
        words[-1] in tx.FILLER or words[-1] in _FORM_WORDS or _UNIT_WORD.fullmatch(words[-1])
    ):
        words.pop()
    name = " ".join(words).strip(" .-–*®™")
    return _first_alternative(name)[:MAX_INGREDIENT_CHARS].strip()


def _first_alternative(name: str) -> str:
    """ "cherry or grape tomatoes" -> "cherry tomatoes"; "veggie stock or chicken
    stock" -> "veggie stock"."""
    left, sep, right = name.partition(" or ")
    if not sep or not left:
        return name
    right_words = right.split()
    if len(left.split()) == 1 and len(right_words) >= 2:
        return f"{left} {right_words[-1]}"
    return left


@functools.lru_cache(maxsize=16384)
def canonical_food(name: str) -> str:
    """An ingredient name in the form recipes are compared by: singular words,
    folded spellings. "Cherry Tomatoes" -> "cherry tomato"."""
    words = (t.removesuffix("'s") for t in tx.words_of(name))  # "farmer's cheese"
    return " ".join(t for t in words if t not in tx.FILLER)


def _is_food(name: str) -> bool:
    return bool(name) and bool(_A_LETTER.search(name)) and name not in lx.STAPLES


def is_minor(food: str) -> bool:
    """A canonical food no photo shows: salt, oil, spices, leavening."""
    if food in lx.STAPLES or food in lx.MINOR_FOODS:
        return True
    last = food.rsplit(" ", 1)[-1]
    return last in lx.MINOR_FOOD_HEADS


def main_ingredients(lines: Sequence[str], limit: int = MAX_MAIN_INGREDIENTS) -> tuple[str, ...]:
    """The first few distinct non-staple ingredients, in the recipe's order."""
    found: list[str] = []
    seen: set[str] = set()
    for line in lines:
        name = ingredient_name(line)
        canonical = canonical_food(name)
        if not _is_food(name) or canonical in lx.STAPLES or canonical in seen:
            continue
        seen.add(canonical)
        found.append(name)
        if len(found) == limit:
            break
    return tuple(found)


def defining_ingredients(lines: Sequence[str]) -> tuple[str, ...]:
    """The recipe's foods that a photo may show, canonical and sorted."""
    foods: set[str] = set()
    for line in lines:
        canonical = canonical_food(ingredient_name(line))
        if _is_food(canonical) and not is_minor(canonical):
            foods.add(canonical)
    return tuple(sorted(foods)[:MAX_DEFINING_INGREDIENTS])


def signature_foods(title: str, lines: Sequence[str]) -> tuple[str, ...]:
    """The picture-changing foods the title or an ingredient names ("cherry
    tomatoes" are tomatoes, not cherries)."""
    found: set[str] = set()
    # An optional food is not in every picture of the dish.
    kept = [line for line in lines if "optional" not in line.lower()]
    names = [tx.clean(title).lower(), *(ingredient_name(line) for line in kept)]
    for name in names:
        text = name
        for phrase in lx.NOT_SIGNATURE:
            text = text.replace(phrase, " ")
        for token in tx.words_of(text):
            signature = lx.SIGNATURE_FOODS.get(token)
            if signature:
                found.add(signature)
    return tuple(sorted(found))


_KNOWN_WORDS = frozenset(
    word
    for word in (
        lx.FOOD_WORDS
        | frozenset(tx.singular(w) for w in lx.FOOD_WORDS)
        | frozenset(t for head in lx.DISH_HEADS for t in tx.words_of(head))
        | frozenset(
            t for w in lx.MEAT_WORDS | lx.DAIRY_WORDS | lx.GLUTEN_WORDS for t in tx.words_of(w)
        )
    )
    # Short words and other languages' little words ("de") say nothing.
    if len(word) > 2 and word not in lx.FOREIGN_WORDS and word not in tx.FILLER
)


def recognized_share(lines: Sequence[str]) -> float:
    """The share of ingredient lines naming a food the lexicon knows."""
    names = [ingredient_name(line) for line in lines]
    names = [n for n in names if n]
    if not names:
        return 0.0
    known = sum(1 for n in names if any(t in _KNOWN_WORDS for t in tx.words_of(n)))
    return known / len(names)
