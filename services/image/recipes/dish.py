"""The dish a recipe title names in words for the prompt (dish_name), the
title's parts and noise (used by canonical.py for the similar-dish key), and
whether a title is English at all. Pure Python.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from services.image.recipes import lexicon as lx
from services.image.recipes import text as tx

MAX_DISH_CHARS = 120
# A recipe whose ingredient lines are recognized less often than this is not
# read as English: no dish identity, no inferred dietary tags.
MIN_RECOGNIZED_INGREDIENTS = 0.5


_APPLIANCES = tx.words_pattern(lx.APPLIANCE_PHRASES)
DIET_PATTERN = tx.words_pattern(lx.DIET_PHRASES)
_TIME_AND_COUNT = re.compile(
    r"\b(?:\d+(?:[.,]\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|twenty|thirty)"
    r"\s*[-–]?\s*(?:minutes?|mins?|hours?|hrs?|ingredients?|ways?|"
    r"servings?|grams?|g|calories?|dollars?)\b|\$\s*\d+(?:[.,]\d+)?(?:\s*/\s*\w+)?|\b\d+\b",
    re.IGNORECASE,
)
_RECIPE_WORD = re.compile(r"\brecipes?\b", re.IGNORECASE)
_SPACES = re.compile(r"\s+")
_TITLE_PARTS = re.compile(r"\s+[|–—-]\s+|\s*\|\s*|:\s+|\s+–\s*|\s*—\s*")


def key_tokens(text: str) -> list[str]:
    """The words a dish name is matched by: dietary words, fillers, praise and
    single letters out, plurals and spellings folded."""
    text = DIET_PATTERN.sub(" ", text)
    return [
        token
        for token in tx.words_of(text)
        if token not in tx.FILLER
        and token not in ("n", "with", "style")
        and len(token) > 1
        and token not in lx.NOISE_WORDS
    ]


# Heads by number of words, longest first, as tuples of singular tokens.
_HEADS: tuple[tuple[tuple[str, ...], str], ...] = tuple(
    sorted(
        (
            (tuple(key_tokens(head)), course)
            for head, course in lx.DISH_HEADS.items()
            if key_tokens(head)
        ),
        key=lambda item: -len(item[0]),
    )
)


def title_parts(title: str) -> list[str]:
    """A title's parts: "Caçoila | Portuguese Stewed Beef" -> two parts."""
    without = tx.BRACKETS.sub(" ", title)
    parts = [p.strip(" -–—|:,.!?*") for p in _TITLE_PARTS.split(without)]
    return [p for p in parts if p]


def cut_headline(text: str) -> str:
    """ "20-Minute Chipotle Creamed Chicken Recipe Puts a Spicy Spin ..." -> before
    "Recipe": a headline goes on after the dish's name, a name goes on with "with"."""
    match = _RECIPE_WORD.search(text)
    if not match or match.start() == 0:
        return text
    rest = text[match.end() :].split()
    if len(rest) >= 3 and rest[0].lower() not in ("with", "for", "and"):
        return text[: match.start()]
    return text


def strip_noise(text: str) -> str:
    text = _APPLIANCES.sub(" ", text)
    text = _TIME_AND_COUNT.sub(" ", text)
    words = []
    for word in _SPACES.split(text):
        bare = word.strip(" ,.!?;:\"'").lower()
        plain = bare.replace("’", "'")
        if not bare:
            continue
        if plain in lx.NOISE_WORDS:
            continue
        if plain.endswith("'s") and plain not in ("shepherd's", "devil's", "hunter's"):
            continue  # "Grandma's", "Emeril's": whose, not what
        words.append(word.strip(" ,;:"))
    return " ".join(words)


_HEADS_BY_FIRST: dict[str, list[tuple[tuple[str, ...], str]]] = {}
for _words, _course_name in _HEADS:
    _HEADS_BY_FIRST.setdefault(_words[0], []).append((_words, _course_name))


def _find_head(tokens: Sequence[str]) -> tuple[int, int, str] | None:
    """(end, length, course) of the dish head that ends last in tokens, the
    longest of those: "chicken pot pie" -> "pot pie"."""
    best: tuple[int, int, str] | None = None
    for start in range(len(tokens)):
        for words, course in _HEADS_BY_FIRST.get(tokens[start], ()):
            end = start + len(words)
            if tuple(tokens[start:end]) == words:
                if best is None or (end, len(words)) > best[:2]:
                    best = (end, len(words), course)
                break  # the longest head at this place
    return best


@functools.lru_cache(maxsize=4096)
def dish_name(title: str) -> str:
    """The dish in words for the prompt: the title without brackets, praise,
    appliances and counts. "My Favorite Pumpkin Bread (Kabocha + Dark Chocolate)"
    -> "pumpkin bread"."""
    parts = title_parts(tx.clean(title))
    chosen = parts[0] if parts else ""
    for part in parts:
        if _find_head(tx.words_of(cut_headline(part))) is not None:
            chosen = part
            break
    text = strip_noise(cut_headline(chosen))
    text = _SPACES.sub(" ", text).strip(" -–—|:,.!&+").lower()
    if not text:  # the title was nothing but noise: keep it as written
        text = tx.clean(tx.BRACKETS.sub(" ", title)).lower() or tx.clean(title).lower()
    return text[:MAX_DISH_CHARS].strip()


def looks_english(title: str, recognized: float, ingredient_count: int) -> bool:
    if tx.FOREIGN_SCRIPT.search(title):
        return False
    # "Cacio e pepe" is English too.
    words = [
        w.lower()
        for w in tx.WORD.findall(tx.BRACKETS.sub(" ", title.lower().replace("cacio e pepe", "")))
    ]
    # A trailing "I" is a numeral ("Pumpkin Pie I"), not Norwegian.
    inner = words[:-1] if words and words[-1] == "i" else words
    if any(w in lx.FOREIGN_WORDS for w in inner):
        return False
    return ingredient_count == 0 or recognized >= MIN_RECOGNIZED_INGREDIENTS
