"""text.Scanner answers exactly what each words pattern answers alone: the
facts about lower case it relies on, checked over every code point, and its
answers beside the patterns' own on the real recipes and on made-up texts."""

from __future__ import annotations

import re
import sys

import pytest

from services.image.recipes import ingredients as ing
from services.image.recipes import text as tx
from services.image.recipes.analyzer import SCANNER
from services.image.recipes.ingredients import ingredient_name
from tests.image.test_analyzer import real_recipes

TABLES = sorted(SCANNER.tables, key=lambda words: sorted(words.words))
WORD_OR_HYPHEN = re.compile(r"[\w-]")


def _code_points() -> list[str]:
    return [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]


def test_every_character_ignorecase_takes_for_a_word_letter_lowers_to_it_or_is_a_trap() -> None:
    every = [*TABLES, ing._DESCRIPTOR_WORDS]
    alphabet = sorted({char for words in every for word in words.words for char in word})
    assert tx.CASE_TRAPS.isdisjoint(alphabet)
    same = {letter: re.compile(re.escape(letter), re.IGNORECASE) for letter in alphabet}
    any_letter = re.compile("|".join(re.escape(letter) for letter in alphabet), re.IGNORECASE)
    for found in any_letter.finditer("".join(_code_points())):
        char = found.group()
        for letter, pattern in same.items():
            if pattern.fullmatch(char) and char.lower() != letter:
                assert char in tx.CASE_TRAPS, (char, letter)


def test_lower_case_keeps_what_is_a_word_character() -> None:
    chars = [c for c in _code_points() if c not in tx.CASE_TRAPS and len(c.lower()) == 1]
    text, low = "".join(chars), "".join(c.lower() for c in chars)
    assert [m.start() for m in WORD_OR_HYPHEN.finditer(text)] == [
        m.start() for m in WORD_OR_HYPHEN.finditer(low)
    ]
    assert [c for c in _code_points() if len(c.lower()) != 1] == ["\u0130"]


def _assert_same_answers(text: str) -> None:
    scan = SCANNER.scan(text)
    for words in TABLES:
        assert words.search(scan) == (words.pattern.search(text) is not None), (text, words.words)
        assert words.count(scan) == len(words.pattern.findall(text)), (text, words.words)
        assert words.sub(" ", scan) == words.pattern.sub(" ", text), (text, words.words)
    _assert_same_descriptors(text)


def _assert_same_descriptors(text: str) -> None:
    descriptors = ing._DESCRIPTOR_SCANNER.scan(text)
    assert ing._DESCRIPTOR_WORDS.sub(" ", descriptors) == ing._DESCRIPTORS.sub(" ", text), text


def test_scanned_answers_are_the_patterns_own_on_the_real_recipes() -> None:
    for raw in real_recipes()[::4]:
        ingredients = [str(line) for line in raw.get("ingredients") or []]
        for line in ingredients:
            _assert_same_descriptors(tx.clean(line).lower())
        _assert_same_answers(str(raw.get("title") or ""))
        _assert_same_answers(" ; ".join(ingredient_name(line) for line in ingredients))
        _assert_same_answers(" ".join(str(step) for step in raw.get("instructions") or []))
        for label in (str(raw.get("category") or ""), str(raw.get("cuisine") or "")):
            for part in label.split(","):
                _assert_same_answers(part.strip().lower())


def _spellings(pattern: str) -> list[str]:
    """Every text a plain pattern (letters, [classes], ?) matches."""
    if not pattern:
        return [""]
    if pattern[0] == "[":
        close = pattern.index("]")
        heads, rest = list(pattern[1:close]), pattern[close + 1 :]
    else:
        heads, rest = [pattern[0]], pattern[1:]
    if rest.startswith("?"):
        heads, rest = [*heads, ""], rest[1:]
    return [head + tail for head in heads for tail in _spellings(rest)]


_ALL_WORDS = sorted(
    {word for words in TABLES for word in words.words}
    | {text for pattern in ing._DESCRIPTOR_PATTERNS for text in _spellings(pattern)}
)


@pytest.mark.parametrize("separator", [" ", "-", ""])
@pytest.mark.parametrize(
    "spelled",
    [
        str,
        str.upper,
        str.title,
        lambda w: w.replace("i", "\u0131"),  # dotless i: re reads it as i, lower() does not
        lambda w: w.replace("I", "\u0130").replace("i", "\u0130"),  # İ lowers to two
        lambda w: w.replace("s", "\u017f"),  # long s
        lambda w: w.replace("k", "\u212a"),  # Kelvin sign: lowers to k
        lambda w: "x" + w + "s",
    ],
)
def test_scanned_answers_are_the_patterns_own_on_made_up_texts(separator, spelled) -> None:  # type: ignore[no-untyped-def]
    words = [spelled(word) for word in _ALL_WORDS]
    _assert_same_answers(separator.join(words))
    _assert_same_answers(separator.join(reversed(words)))
    # Overlapping words of one table and of two ("air fry": air-fried and pan-fried).
    _assert_same_answers(separator.join(spelled(w) for w in ("air fry", "stir-fry", "fry")))


def test_the_trie_alternation_finds_the_longest_word_at_a_place() -> None:
    pattern = re.compile(tx.trie_alternation(["bake", "baked", "baking", "bar", "b"]))
    assert [pattern.match(t).group() for t in ("baked", "bakes", "baking", "bar", "bx")] == [  # type: ignore[union-attr]
        "baked",
        "bake",
        "baking",
        "bar",
        "b",
    ]
    assert pattern.match("a") is None


def test_a_pattern_is_found_by_what_its_matches_begin_with() -> None:
    assert [
        ing.literal_start(p) for p in ("bite[- ]sized?", "sizes?", "favou?rite", "to serve")
    ] == ["bite", "size", "favo", "to serve"]
    for pattern in ing._DESCRIPTOR_PATTERNS:
        assert all(s.startswith(ing.literal_start(pattern)) for s in _spellings(pattern))


def test_an_empty_word_is_refused() -> None:
    with pytest.raises(ValueError):
        tx.Words(["cake", ""])


def test_words_of_another_scanner_are_refused() -> None:
    stranger = tx.Words(["cake"])
    with pytest.raises(ValueError):
        stranger.search(SCANNER.scan("cake"))
