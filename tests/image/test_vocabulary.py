"""The dish vocabulary (services/image/recipes/dishes.json) is well formed, and
none of its foreign names reads as another English dish."""

from __future__ import annotations

import json
import re
from typing import Any

from services.image.recipes import vocabulary as vc
from services.image.recipes.canonical import KNOWN_WORDS, canonical_dish

# Kinds of dish one word names: a foreign name that reads word by word as one
# kind ("torta de maçã": apple cake) under a dish of another kind (apple pie)
# would make every such English dish that other one.
_KINDS = frozenset({
    "cake", "pie", "tart", "bread", "soup", "stew", "salad", "sauce", "cookie", "pudding",
    "omelet", "sandwich", "roll", "fries", "roast",
})  # fmt: skip
LANGUAGES_ON_RECIPE_SITES = 9  # fr, es, pt, it, de, nl, hu, ja, ko


def test_the_vocabulary_file_is_well_formed() -> None:
    raw = json.loads(vc.DISHES_FILE.read_text(encoding="utf-8"))
    assert set(raw) == {
        "about",
        "version",
        "dishes",
        "words",
        "spellings",
        "filler",
        "noise",
        "brands",
    }
    assert raw["version"] == 1
    for item in raw["dishes"]:
        assert set(item) == {"dish", "course", "cuisine", "names"}, item
        assert isinstance(item["names"], list) and all(isinstance(n, str) for n in item["names"])
    assert vc.problems() == []


def test_no_foreign_name_reads_as_another_english_dish() -> None:
    """ "Torta de maçã" read word by word is "apple cake": as a name of apple pie it
    would make every apple cake an apple pie."""
    clashes = []
    for dish in raw_dishes():
        canonical = set(vc.words(dish["dish"]))
        for name in dish["names"]:
            if vc.CJK.search(name):
                continue
            words = [w for w in vc.words(name) if w not in vc.FILLER]
            other_kind = (set(words) & _KINDS) - canonical
            if all(w in KNOWN_WORDS for w in words) and other_kind and canonical & _KINDS:
                clashes.append(f"{name!r} ({dish['dish']})")
    assert clashes == []


def test_every_dish_reads_as_itself_under_each_of_its_names() -> None:
    for dish in raw_dishes():
        expected = canonical_dish(dish["dish"])
        assert expected.key, dish["dish"]
        for name in dish["names"]:
            assert canonical_dish(name).key == expected.key, (name, dish["dish"])


def test_the_vocabulary_covers_the_languages_of_recipe_sites() -> None:
    names = [name for dish in raw_dishes() for name in dish["names"]]
    assert len(raw_dishes()) >= 150
    assert sum(1 for n in names if re.search(r"[\u3040-\u30ff]", n)) >= 30  # Japanese kana
    assert sum(1 for n in names if re.search(r"[\uac00-\ud7af]", n)) >= 20  # Korean
    # A few words of each language, spot-checked.
    for word, english in {
        "poulet": "chicken", "pollo": "chicken", "frango": "chicken", "hahnchen": "chicken",
        "kip": "chicken", "csirke": "chicken", "gateau": "cake", "bolo": "cake",
        "kuchen": "cake", "torta": "cake",
    }.items():  # fmt: skip
        assert vc.words(word) == [english], word


def raw_dishes() -> list[dict[str, Any]]:
    dishes: list[dict[str, Any]] = json.loads(vc.DISHES_FILE.read_text(encoding="utf-8"))["dishes"]
    return dishes


def test_no_name_is_read_as_a_bare_food() -> None:
    """A name that read as one food word ("pan de banana" without "pan") would
    make every recipe naming that food this dish."""
    bare = [
        (name, dish["dish"])
        for dish in raw_dishes()
        for name in dish["names"]
        if not vc.CJK.search(name)
        and canonical_dish(name).key in KNOWN_WORDS - {canonical_dish(dish["dish"]).key}
    ]
    assert bare == []
    assert canonical_dish("Banana Cream Pie").key == "banana cream pie"
    assert canonical_dish("Pan de banana").key != "banana"
