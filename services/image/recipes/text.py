"""Text helpers of recipe understanding: cleaning, word patterns (and the
Scanner that finds many of them in one pass), words and their singulars.
Pure Python."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence

from services.image.recipes import lexicon as lx

_FORMAT_CHARS = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def clean(text: str) -> str:
    if not text.isascii():  # ASCII is NFC already, and has none of these
        text = _FORMAT_CHARS.sub("", unicodedata.normalize("NFC", text))  # BOMs, joiners
        text = text.replace("’", "'").replace("‘", "'")
    # str.split() splits on what re's \s matches (str.isspace).
    return " ".join(text.replace("`", "'").split())


def words_pattern(words: Iterable[str]) -> re.Pattern[str]:
    alternatives = sorted({re.escape(w) for w in words}, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(alternatives) + r")(?![\w-])", re.IGNORECASE)


# Characters re.IGNORECASE takes for a Latin letter although str.lower() does
# not make them that letter: dotless i, long s, and İ (which lowers to two).
CASE_TRAPS = frozenset("\u0130\u0131\u017f")


def lowered(text: str) -> str | None:
    """text.lower() when it lines up with text character by character and
    re.IGNORECASE would read no character of it otherwise; None when not."""
    low = text.lower()
    if len(low) != len(text) or (not low.isascii() and not CASE_TRAPS.isdisjoint(low)):
        return None
    return low


class Words:
    """A words_pattern, searched, counted and replaced at the places a Scanner found."""

    __slots__ = ("pattern", "words")

    def __init__(self, words: Iterable[str], pattern: re.Pattern[str] | None = None) -> None:
        """words: the words of a words_pattern; or, with a pattern of the same
        shape ((?<![\\w-]) first, re.IGNORECASE), what every match of it begins with."""
        words = list(words)
        if not all(words):
            raise ValueError("an empty word would match everywhere")
        self.pattern = words_pattern(words) if pattern is None else pattern
        self.words = frozenset(w.lower() for w in words)

    def search(self, scan: Scan) -> bool:
        """Whether self.pattern matches the scanned text."""
        starts = scan.starts_of(self)
        if starts is None:
            return self.pattern.search(scan.text) is not None
        return any(self.pattern.match(scan.text, at) for at in starts)

    def count(self, scan: Scan) -> int:
        """len(self.pattern.findall(text)): its matches, none overlapping."""
        starts = scan.starts_of(self)
        if starts is None:
            return len(self.pattern.findall(scan.text))
        found, end = 0, 0
        for at in starts:
            if at < end:
                continue
            match = self.pattern.match(scan.text, at)
            if match:
                found, end = found + 1, match.end()
        return found

    def sub(self, replacement: str, scan: Scan) -> str:
        """self.pattern.sub(replacement, text), replacement taken literally."""
        starts = scan.starts_of(self)
        if starts is None:
            return self.pattern.sub(replacement.replace("\\", r"\\"), scan.text)
        pieces: list[str] = []
        end = 0
        for at in starts:
            if at < end:
                continue
            match = self.pattern.match(scan.text, at)
            if match:
                pieces += (scan.text[end:at], replacement)
                end = match.end()
        pieces.append(scan.text[end:])
        return "".join(pieces)


class Scanner:
    """Where the words of many Words may match a text, found in one pass.

    Trying a pattern at every position of a text is what costs, not its
    number of words: one case-sensitive pass over the lowered text finds each
    place where some word starts (lowered(): the places the patterns could
    match, and more), and each Words then lets its own pattern decide at its
    places only, so search, count and sub answer exactly what the pattern's
    own search, findall and sub would. Text lowered() cannot line up goes to
    the patterns whole.
    """

    def __init__(self, tables: Iterable[Words]) -> None:
        self.tables = frozenset(tables)
        union = sorted(set().union(*(t.words for t in self.tables)), key=len, reverse=True)
        # Lookahead: places inside a longer word's match are found too.
        self._places = re.compile(r"(?<![\w-])(?=(" + trie_alternation(union) + "))")
        owners: dict[str, list[Words]] = {}
        for table in self.tables:
            for word in table.words:
                owners.setdefault(word, []).append(table)
        # The longest word found at a place: every table with a word it starts
        # with (those words start there too).
        self._tables_of = {
            word: tuple(
                dict.fromkeys(
                    t for end in range(1, len(word) + 1) for t in owners.get(word[:end], ())
                )
            )
            for word in union
        }

    def scan(self, text: str) -> Scan:
        low = lowered(text)
        if low is None:
            return Scan(self, text, None)
        starts: dict[Words, list[int]] = {}
        for match in self._places.finditer(low):
            for table in self._tables_of[match.group(1)]:
                starts.setdefault(table, []).append(match.start())
        return Scan(self, text, starts)


def trie_alternation(words: Iterable[str]) -> str:
    """A regex matching the longest of words that starts at a place, its
    alternatives sharing their prefixes ("ba(?:ke(?:d)?|king)"): re tries a
    plain alternation's every word at every place, this one a letter at a time."""
    root: dict[str, dict] = {}  # type: ignore[type-arg]
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here

    def alternation(node: dict[str, dict]) -> str:  # type: ignore[type-arg]
        branches = [re.escape(char) + alternation(child) for char, child in node.items() if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        # Greedy: the longer word first, then the one ending here.
        return f"(?:{body})?" if "" in node else body

    return alternation(root)


class Scan:
    """A text and where each of a Scanner's Words may match it."""

    __slots__ = ("_scanner", "text", "_starts")

    def __init__(self, scanner: Scanner, text: str, starts: dict[Words, list[int]] | None) -> None:
        self._scanner, self.text, self._starts = scanner, text, starts

    def starts_of(self, words: Words) -> Sequence[int] | None:
        """Where words may match, in order; None: try the pattern everywhere."""
        if words not in self._scanner.tables:
            raise ValueError("these words are not the scanner's")
        return None if self._starts is None else self._starts.get(words, ())


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
    return list(_words_of(text))


@functools.lru_cache(maxsize=16384)
def _words_of(text: str) -> tuple[str, ...]:
    # Cached: the same ingredient names come back in every recipe.
    return tuple(singular(w) for w in WORD.findall(text.lower()))
