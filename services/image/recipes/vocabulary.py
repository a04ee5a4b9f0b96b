"""The dish vocabulary of dishes.json, loaded once: the dishes recipe sites
name in several languages, each under one canonical English name, and the
words of those languages that a title is read with.

Words are compared folded (lower case, no accents: "Bœuf" is "boeuf") and
then translated ("poulet" -> "chicken"), respelled ("shakshouka" ->
"shakshuka") and put in the singular, the same way for a title and for a
name of the vocabulary, so "Tortillas españolas" finds "tortilla española".
Reading the data file is the only I/O of recipe understanding, done once at
import.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.image.recipes import lexicon as lx
from services.image.recipes import text as tx

DISHES_FILE = Path(__file__).with_name("dishes.json")

_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "ß": "ss", "ø": "o", "ł": "l", "đ": "d"})
# A script without spaces between words (Japanese, Chinese, Korean).
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")


def _without_accent(char: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))


# Accents off Latin letters only (a table: folding is on every title's path).
_FOLD = str.maketrans(
    {
        chr(code): _without_accent(chr(code))
        for code in [*range(0xC0, 0x250), *range(0x1E00, 0x1F00)]
        if _without_accent(chr(code)) != chr(code)
    }
)


def fold(text: str) -> str:
    """Lower case, accents off Latin letters only: "Bœuf Bourguignon" -> "boeuf bourguignon"."""
    return tx.clean(text).lower().translate(_LIGATURES).translate(_FOLD)


@dataclass(frozen=True)
class Dish:
    words: tuple[str, ...]  # the canonical name's words, as read
    name: str  # the canonical name as written
    course: str
    cuisine: str


def _load() -> dict[str, Any]:
    raw = json.loads(DISHES_FILE.read_text(encoding="utf-8"))
    assert isinstance(raw, dict)
    return raw


RAW = _load()
TRANSLATIONS: dict[str, str] = {fold(k): v for k, v in RAW["words"].items()}
SPELLINGS: dict[str, str] = {fold(k): v for k, v in RAW["spellings"].items()}
FOREIGN_FILLER = frozenset(fold(w) for w in RAW["filler"])
FOREIGN_NOISE = frozenset(fold(w) for w in RAW["noise"])


def _word(word: str) -> list[str]:
    """One folded word as the words it stands for."""
    if word in TRANSLATIONS:
        return [tx.singular(w) for w in TRANSLATIONS[word].split()]
    if word in SPELLINGS:
        return [tx.singular(w) for w in SPELLINGS[word].split()]
    return [fold(tx.singular(word))]


@functools.lru_cache(maxsize=8192)
def _words(text: str) -> tuple[str, ...]:
    found: list[str] = []
    for word in tx.WORD.findall(fold(text)):
        found += _word(word)
    return tuple(found)


def words(text: str) -> list[str]:
    """The words of text, folded, translated, respelled and singular."""
    return list(_words(text))


def is_foreign_word(word: str) -> bool:
    """A folded word of another language: a title with one is read strictly."""
    return word in TRANSLATIONS or word in FOREIGN_NOISE or word in lx.FOREIGN_WORDS


# Words that name nothing: filler of every language, praise, brands.
FILLER = frozenset(tx.FILLER | FOREIGN_FILLER | {"with", "n", "style"})
BRAND_WORDS: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        {tuple(words(b)) for b in RAW["brands"]},
        key=len,
        reverse=True,
    )
)


def _dishes() -> tuple[list[Dish], dict[tuple[str, ...], int], dict[str, int]]:
    dishes: list[Dish] = []
    by_words: dict[tuple[str, ...], int] = {}
    by_script: dict[str, int] = {}
    for index, item in enumerate(RAW["dishes"]):
        canonical = str(item["dish"])
        dish_words = tuple(w for w in words(canonical) if w not in FILLER)
        dishes.append(Dish(dish_words, canonical, str(item["course"]), str(item["cuisine"])))
        for name in [canonical, *item["names"]]:
            if CJK.search(name):
                by_script.setdefault(re.sub(r"\s+", "", name), index)
            else:
                key = tuple(w for w in words(name) if w not in FILLER)
                if key:
                    by_words.setdefault(key, index)
    return dishes, by_words, by_script


DISHES, NAMES, SCRIPT_NAMES = _dishes()
LONGEST_NAME = max(len(k) for k in NAMES)


def problems() -> list[str]:
    """What is wrong with dishes.json: a name of two dishes, an unknown course
    or cuisine, an empty name. Empty when it is well formed."""
    found: list[str] = []
    owner: dict[object, str] = {}
    for item in RAW["dishes"]:
        canonical = item["dish"]
        if not canonical or canonical != canonical.strip().lower():
            found.append(f"dish {canonical!r}: a canonical name is lower case and trimmed")
        if item["course"] not in lx.COURSES:
            found.append(f"dish {canonical!r}: unknown course {item['course']!r}")
        if item["cuisine"] and item["cuisine"] not in lx.CUISINE_LABELS:
            found.append(f"dish {canonical!r}: unknown cuisine {item['cuisine']!r}")
        for name in [canonical, *item["names"]]:
            if not isinstance(name, str) or not name.strip():
                found.append(f"dish {canonical!r}: an empty name")
                continue
            key: object = (
                re.sub(r"\s+", "", name)
                if CJK.search(name)
                else tuple(w for w in words(name) if w not in FILLER)
            )
            if not key:
                found.append(f"dish {canonical!r}: name {name!r} has no words")
            elif owner.setdefault(key, canonical) != canonical:
                found.append(f"name {name!r} names both {owner[key]!r} and {canonical!r}")
    for key in ("words", "spellings"):
        for word, meaning in RAW[key].items():
            if not meaning or not tx.WORD.fullmatch(fold(word)):
                found.append(f"{key}: {word!r} -> {meaning!r} is not one word and a meaning")
    return found
