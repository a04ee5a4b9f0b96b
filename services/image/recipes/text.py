"""Text helpers of recipe understanding: cleaning, word patterns, words and
their singulars. Pure Python."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from services.image.recipes import lexicon as lx

_FORMAT_CHARS = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def clean(text: str) -> str:
    text = _FORMAT_CHARS.sub("", unicodedata.normalize("NFC", text))  # BOMs, joiners
    text = text.replace("’", "'").replace("‘", "'").replace("`", "'")
    return re.sub(r"\s+", " ", text).strip()


def words_pattern(words: Iterable[str]) -> re.Pattern[str]:
    alternatives = sorted({re.escape(w) for w in words}, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(alternatives) + r")(?![\w-])", re.IGNORECASE)


WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
FOREIGN_SCRIPT = re.compile(r"[^\x00-\u024f\u1e00-\u1eff\u2000-\u206f\u20a0-\u20cf\u2100-\u218f]")

BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]|\{[^}]*\}")
FILLER = frozenset({"of", "and", "or", "for", "to", "plus", "the", "a", "an", "as", "in", "on"})


def singular(word: str) -> str:
    """A simple English singular: cookies -> cookie, tomatoes -> tomato, berries -> berry."""
    if word in lx.SYNONYMS:
        return lx.SYNONYMS[word]
    if len(word) <= 3 or word in lx.KEEP_PLURAL or not word.endswith("s"):
        return word
    if word.endswith(("ss", "us", "is", "'s")):
        return word
    stem = word[:-1]
    if stem in lx.DISH_HEADS or stem in lx.FOOD_WORDS:
        return lx.SYNONYMS.get(stem, stem)
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("oes", "ches", "shes", "xes", "sses", "zes")):
        return word[:-2]
    return stem


def words_of(text: str) -> list[str]:
    """The words of text, lower case and singular."""
    return [singular(w) for w in WORD.findall(text.lower())]
