"""The canonical dish a recipe title names: the key two recipes must share to
share an image.

A title is read in parts ("Caçoila | Portuguese Stewed Beef"), and the first
part that names a dish is the dish. Its words are folded, translated and
respelled (vocabulary.py); a dish of the vocabulary ("coq au vin", "tortilla
española") becomes its canonical English name; what does not change the
picture is left out: praise and selling words ("best", "easy", "moist",
"double", "homemade"), textures every such dish has ("fudgy", "crispy"),
people ("Grandma's", "by Tasty"), brands and chains, appliances, counts and
times, dietary words (they are a dish's variant, kept apart), and the
cuisine a dish of the vocabulary belongs to anyway ("Polish pierogi"). What
is left is the dish's head and the modifiers that change the picture
("chocolate" in chocolate cake), as a sorted multiset of words.

A title with words of another language is read strictly: every word left
must be one the analyzer knows, else the dish is unknown. Pure Python.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from services.image.recipes import lexicon as lx
from services.image.recipes import text as tx
from services.image.recipes import vocabulary as vc
from services.image.recipes.dish import DIET_PATTERN, cut_headline, strip_noise, title_parts

# Words that praise, sell or describe what every such dish is like: not in a key.
# Not "crisp", "tender" or "soft": an apple crisp, chicken tenders, soft tacos.
_DESCRIPTIVE = frozenset({
    "moist", "fluffy", "chewy", "fudgy", "gooey", "crispy", "crunchy", "flaky",
    "buttery", "juicy", "rich", "hearty", "double", "decadent", "famous", "legendary",
    "award", "winning", "original", "genuine", "signature", "nana", "granny", "aunt", "auntie",
    "uncle", "mama", "mamma", "dad", "papa", "chef", "chefs", "grandmother", "grandpa", "nonna",
    "abuela", "oma", "grootmoeder", "nagymama", "mormor", "farmor", "copycat", "knockoff",
    "delightful", "heavenly", "divine", "killer", "epic", "mouthwatering", "scrumptious",
    "luscious", "addictive", "addicting", "dreamy", "fantastic", "glorious", "excellent",
    "flavorful", "flavourful", "comforting", "cozy", "satisfying", "wholesome", "nourishing",
    "clean", "eating", "lightened", "up", "dinner", "lunch", "supper", "weeknight", "night",
    "sunday", "everyday", "party", "crowd", "pleaser", "pleasing", "kid", "kids", "friendly",
    "company", "worthy", "must", "try", "hack", "trick", "secret", "bakery", "diner",
    "restaurant", "takeout", "takeaway", "fakeaway", "instant",
})  # fmt: skip
_APPLIANCE_WORDS = frozenset({"oven", "stovetop", "skillet", "sheet", "pan"})
_NOISE = frozenset(lx.NOISE_WORDS | vc.FOREIGN_NOISE | _DESCRIPTIVE)
# The cuisine each title word names ("polish" -> Eastern European).
_CUISINE_OF_WORD: dict[str, str] = {
    vc.fold(word): cuisine
    for cuisine, names in lx.CUISINE_TITLE_WORDS.items()
    for word in names
    if " " not in word
}
_HEAD_COURSES: dict[tuple[str, ...], str] = {}
for _head, _course in lx.DISH_HEADS.items():
    _words = tuple(w for w in vc.words(_head) if w not in vc.FILLER)
    if _words:
        _HEAD_COURSES.setdefault(_words, _course)
_LONGEST_HEAD = max(len(k) for k in _HEAD_COURSES)
# A name of one word that is a food and not a dish says too little: "Chicken",
# "Jeffrey's Favorite Chicken", "Salmon".
_GENERIC = frozenset(
    vc.fold(tx.singular(w))
    for w in lx.GENERIC_HEADS
    | lx.MEAT_WORDS
    | {
        "pasta", "noodle", "rice", "potato", "vegetable", "tofu", "tempeh", "seitan", "lentil",
        "chickpea", "bean", "egg", "quinoa", "broccoli", "cauliflower", "carrot", "corn",
        "squash", "zucchini", "eggplant", "mushroom", "tomato", "pea", "asparagus", "sprout",
        "pear", "apple", "cheese",
    }
)  # fmt: skip
_STANDALONE = frozenset(vc.fold(tx.singular(w)) for w in lx.STANDALONE_DISHES)

# Words an English reading of a foreign title may keep: foods, dish heads,
# cuisines, methods, colours and forms.
_MODIFIERS = frozenset({
    "stuffed", "glaze", "roast", "grilled", "fried", "baked", "braised", "smoked", "steamed",
    "stewed", "poached", "creamy", "spicy", "sweet", "sour", "hot", "cold", "green", "red",
    "white", "black", "yellow", "mini", "whole", "ground", "meat", "breaded", "cake", "tart",
    "pie", "soup", "stew", "salad", "bread", "sauce", "casserole", "skillet", "patty", "herb",
    "heart", "palm", "wing", "breast", "plum", "jam", "bundt", "marinated", "fish", "dip",
})  # fmt: skip
KNOWN_WORDS = frozenset(
    {vc.fold(tx.singular(w)) for w in lx.FOOD_WORDS}
    | {w for key in _HEAD_COURSES for w in key}
    | {w for dish in vc.DISHES for w in dish.words}
    | {w for value in vc.TRANSLATIONS.values() for w in vc.words(value)}
    | set(_CUISINE_OF_WORD)
    | {vc.fold(tx.singular(w)) for w in lx.SIGNATURE_FOODS}
    | _MODIFIERS
)


@dataclass(frozen=True)
class CanonicalDish:
    """A title's dish: the key's words and the course its head usually is."""

    words: tuple[str, ...]
    course: str

    @property
    def key(self) -> str:
        return " ".join(self.words)


UNKNOWN_DISH = CanonicalDish((), "")


_BY = re.compile(r"\s(?:by|por|von|par|door|från|fra)\s", re.IGNORECASE)
_WITH = re.compile(r"\bwith\b")


def _cut_people(part: str) -> str:
    """ "Tortilla española por Joseba Arguiñano" -> before "por": whose, not what."""
    return _BY.split(part, maxsplit=1)[0]


def _by_first_word(
    sequences: Sequence[tuple[str, ...]],
) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Word sequences by their first word, each list in the order given."""
    found: dict[str, list[tuple[str, ...]]] = {}
    for seq in sequences:
        found.setdefault(seq[0], []).append(seq)
    return {first: tuple(seqs) for first, seqs in found.items()}


# Only a brand that starts with a token can be dropped there: looked up, not tried.
_BRANDS_BY_FIRST_WORD = _by_first_word(vc.BRAND_WORDS)


def _drop_sequences(
    tokens: list[str], sequences: dict[str, tuple[tuple[str, ...], ...]]
) -> list[str]:
    """tokens without the sequences (by first word: _by_first_word), the first
    of them that matches at each place."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for seq in sequences.get(tokens[i], ()):
            if tuple(tokens[i : i + len(seq)]) == seq:
                i += len(seq)
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


# Dishes closed around their filling, and the words that then change nothing
# a photo shows: a potato and cheese pierogi looks like any pierogi, a baked
# taquito like a fried one. A meat or a fish in the name still counts.
_CLOSED_DISHES = frozenset({
    "pierogi", "dumpling", "ravioli", "tortellini", "taquito", "empanada", "samosa", "gyoza",
    "wonton", "pasty", "calzone", "turnover", "potsticker", "knish", "varenyky",
})  # fmt: skip
_HIDDEN_FILLINGS = frozenset({"cheese", "potato", "baked", "fried", "filled", "stuffed"})


def _equivalences(tokens: list[str]) -> list[str]:
    """Names for one picture: a breaded cutlet is a schnitzel; the filling of a
    closed dish does not show."""
    if "cutlet" in tokens and "breaded" in tokens:
        tokens = [t for t in tokens if t not in ("cutlet", "breaded")] + ["schnitzel"]
    if _CLOSED_DISHES & set(tokens):
        tokens = [t for t in tokens if t not in _HIDDEN_FILLINGS]
    return tokens


def _keep(token: str) -> bool:
    """A word of a dish's name that the key keeps (the same for a title and
    for a name of the vocabulary)."""
    return (
        token not in vc.FILLER
        and token not in _NOISE
        and token not in _APPLIANCE_WORDS
        and len(token) > 1
    )


def _name_words(words: Sequence[str]) -> tuple[str, ...]:
    return tuple(_equivalences([w for w in words if _keep(w)]))


# The vocabulary's names and dishes, read with the same filter as a title.
_NAMES: dict[tuple[str, ...], int] = {}
for _name, _index in vc.NAMES.items():
    _kept = _name_words(_name)
    # "Pan de banana" without "pan" (a pan, in English) would name every banana.
    if _kept == _name or len(_kept) > 1:
        _NAMES.setdefault(_kept, _index)
_LONGEST_NAME = max(len(k) for k in _NAMES)
_DISH_WORDS = tuple(_name_words(dish.words) for dish in vc.DISHES)


def _script_key(text: str) -> str:
    """A Japanese, Chinese or Korean title without brackets, signs and recipe words."""
    text = re.sub(r"[【\[(（「『].*?[】\])）」』]", "", tx.clean(text))
    text = re.sub(r"[\s♪☆★!！?？。、・~〜♡♥.,:：|-]+", "", text)
    for noise in (
        "レシピ",
        "簡単",
        "本格",
        "絶品",
        "基本の",
        "定番",
        "作り方",
        "레시피",
        "만들기",
        "간단",
    ):
        text = text.replace(noise, "")
    return text


_SCRIPT_NAMES = {_script_key(name): index for name, index in vc.SCRIPT_NAMES.items()}


def _find_dishes(tokens: list[str]) -> tuple[list[str], list[int]]:
    """Tokens with each name of the vocabulary replaced by a marker, and the
    dishes found (longest name first at each place)."""
    out: list[str] = []
    found: list[int] = []
    i = 0
    while i < len(tokens):
        for size in range(min(_LONGEST_NAME, len(tokens) - i), 0, -1):
            index = _NAMES.get(tuple(tokens[i : i + size]))
            if index is not None:
                out.append(f"#{index}")
                found.append(index)
                i += size
                break
        else:
            out.append(tokens[i])
            i += 1
    return out, found


def _head_course(tokens: Sequence[str]) -> str | None:
    """The course of the dish head that ends last in tokens (the longest there)."""
    best: tuple[int, int, str] | None = None
    for start in range(len(tokens)):
        for size in range(min(_LONGEST_HEAD, len(tokens) - start), 0, -1):
            course = _HEAD_COURSES.get(tuple(tokens[start : start + size]))
            if course is not None:
                if best is None or (start + size, size) > best[:2]:
                    best = (start + size, size, course)
                break
    return None if best is None else best[2]


def _read_part(part: str) -> tuple[list[str], list[int], bool]:
    """(words, vocabulary dishes, foreign?) of one part of a title."""
    text = DIET_PATTERN.sub(" ", strip_noise(cut_headline(_cut_people(part))))
    raw = [w for w in tx.WORD.findall(vc.fold(text))]
    foreign = any(vc.is_foreign_word(w) for w in raw[:-1]) or (
        bool(raw) and raw[-1] != "i" and vc.is_foreign_word(raw[-1])
    )
    tokens = vc.words(text)
    tokens = list(_name_words(_drop_sequences(tokens, _BRANDS_BY_FIRST_WORD)))
    marked, dishes = _find_dishes(tokens)
    return marked, dishes, foreign


def _script_dish(title: str) -> CanonicalDish:
    """A title in Japanese, Chinese or Korean: only a whole name of the vocabulary."""
    index = _SCRIPT_NAMES.get(_script_key(title))
    if index is None:
        return UNKNOWN_DISH
    dish = vc.DISHES[index]
    return CanonicalDish(tuple(sorted(_DISH_WORDS[index])), dish.course)


@functools.lru_cache(maxsize=8192)
def canonical_dish(title: str) -> CanonicalDish:
    """The dish a title names (UNKNOWN_DISH when it names none the analyzer can trust)."""
    clean = tx.clean(title)
    if vc.CJK.search(tx.BRACKETS.sub(" ", clean)):
        return _script_dish(clean)
    if tx.FOREIGN_SCRIPT.search(tx.BRACKETS.sub(" ", clean)):
        return UNKNOWN_DISH  # Greek, Cyrillic...: not read
    for part in title_parts(clean):
        dish = _dish_of_part(part)
        if dish is not None:
            return dish
    return UNKNOWN_DISH


def _dish_of_part(part: str) -> CanonicalDish | None:
    marked, dishes, foreign = _read_part(part)
    plain = [t for t in marked if not t.startswith("#")]
    head = _head_course(_WITH.split(" ".join(plain), maxsplit=1)[0].split()) or (
        _head_course(plain)
    )
    if not dishes and head is None:
        if len(plain) == 1 and plain[0] in _STANDALONE:
            return CanonicalDish((plain[0],), "")
        return None
    native = {vc.DISHES[i].cuisine for i in dishes if vc.DISHES[i].cuisine}
    plain = [t for t in plain if _CUISINE_OF_WORD.get(t) not in native]
    if foreign and any(t not in KNOWN_WORDS for t in plain):
        return UNKNOWN_DISH  # another language's word the analyzer cannot read
    # A multiset: "Chicken Fried Chicken" is not "Fried Chicken"; a dish named
    # twice ("Tortilla de patatas o tortilla española") counts once.
    words = list(plain)
    for index in dict.fromkeys(dishes):
        words += _DISH_WORDS[index]
    if not dishes and len(words) == 1 and words[0] in _GENERIC - _STANDALONE:
        return CanonicalDish((), head or "")  # "Cake": which one?
    course = vc.DISHES[dishes[0]].course if dishes else (head or "")
    return CanonicalDish(tuple(sorted(words)), course)


def dish_identity(title: str) -> tuple[str, str]:
    """(identity, head course) of a title; ("", "") when the dish is not known
    (the course alone when only a generic head such as "Cake" is)."""
    dish = canonical_dish(title)
    return dish.key, dish.course


def title_tags(title: str) -> tuple[str, ...]:
    """The dietary variant a title states ("Vegan Chocolate Cake"), sorted:
    another variant of a dish is another dish for the cache."""
    tags = {lx.DIET_PHRASES[m.group(0).lower()] for m in DIET_PATTERN.finditer(tx.clean(title))}
    return tuple(sorted(implied_tags(tags)))


def implied_tags(tags: set[str]) -> set[str]:
    """tags with what each implies (vegan: vegetarian, dairy-free, egg-free)."""
    tags = set(tags)
    changed = True
    while changed:
        changed = False
        for tag, implied in lx.DIET_IMPLIES.items():
            if tag in tags and not tags.issuperset(implied):
                tags.update(implied)
                changed = True
    return tags
