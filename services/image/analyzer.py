"""Recipe context analysis: what dish a recipe is, so the photo shows that dish.

Keyword rules over the title, the site's labels, the ingredient lines and the
instructions, with the words in services/image/lexicon.py. English only: what
it cannot tell it calls "unknown" instead of guessing (a prompt without a
cuisine is better than a prompt with the wrong one), and a recipe in another
language gets no dish identity, so it is never matched to another recipe.

The dish identity is what the similar-dish cache matches on: the dish's name
reduced to its words (praise, appliances, dietary words and quantities left
out; plurals and spellings folded), as a sorted multiset. Two recipes have the
same identity only when their names say the same dish; sharing a cuisine, a
course or a cooking method never makes two dishes one.

Deterministic: the same recipe always gives the same context, which the exact
cache depends on. Pure Python, no I/O.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from services.image import lexicon as lx
from services.image.lexicon import UNKNOWN

MAX_MAIN_INGREDIENTS = 4
MAX_DEFINING_INGREDIENTS = 16
MAX_DISH_CHARS = 120
MAX_INGREDIENT_CHARS = 40
# A recipe whose ingredient lines are recognized less often than this is not
# read as English: no dish identity, no inferred dietary tags.
MIN_RECOGNIZED_INGREDIENTS = 0.5
# Inferring a dietary tag from the ingredients (no meat: vegetarian) needs more.
MIN_RECOGNIZED_FOR_TAGS = 0.75
MIN_INGREDIENTS_FOR_TAGS = 3

COMPLEXITIES = ("simple", "moderate", "complex")


@dataclass(frozen=True)
class Recipe:
    title: str = ""
    ingredients: Sequence[str] = ()
    instructions: Sequence[str] = ()
    categories: Sequence[str] = ()
    cuisine: str = ""
    recipe_id: str = ""


@dataclass(frozen=True)
class RecipeContext:
    """What the photo is of. "unknown" (lexicon.UNKNOWN) means "could not tell"."""

    # The dish as plated, in words for the prompt ("banana cream pie").
    dish: str
    # The dish's identity for matching, "" when unknown (see the module doc).
    dish_identity: str = ""
    cuisine: str = UNKNOWN
    course: str = UNKNOWN
    # The first few foods of the recipe that a photo shows, as written.
    main_ingredients: tuple[str, ...] = field(default_factory=tuple)
    # Every such food, canonical and sorted: what the similarity score compares.
    defining_ingredients: tuple[str, ...] = field(default_factory=tuple)
    cooking_method: str = UNKNOWN
    complexity: str = UNKNOWN
    # Sorted, e.g. ("dairy-free", "vegan", "vegetarian").
    dietary_tags: tuple[str, ...] = field(default_factory=tuple)
    # The foods that change the picture wherever they appear (lexicon.SIGNATURE_FOODS),
    # sorted: part of what makes two recipes the same dish.
    signature_foods: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, object]:
        return {
            "dish": self.dish,
            "dish_identity": self.dish_identity,
            "cuisine": self.cuisine,
            "course": self.course,
            "main_ingredients": list(self.main_ingredients),
            "defining_ingredients": list(self.defining_ingredients),
            "cooking_method": self.cooking_method,
            "complexity": self.complexity,
            "dietary_tags": list(self.dietary_tags),
            "signature_foods": list(self.signature_foods),
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> RecipeContext:
        """A stored context; fields an older entry lacks read as unknown."""

        def text(name: str, default: str = UNKNOWN) -> str:
            value = raw.get(name)
            return value if isinstance(value, str) and value else default

        def words(name: str) -> tuple[str, ...]:
            value = raw.get(name)
            if not isinstance(value, list):
                return ()
            return tuple(str(v) for v in value)

        return cls(
            dish=text("dish", ""),
            dish_identity=text("dish_identity", ""),
            cuisine=text("cuisine"),
            course=text("course"),
            main_ingredients=words("main_ingredients"),
            defining_ingredients=words("defining_ingredients"),
            cooking_method=text("cooking_method"),
            complexity=text("complexity"),
            dietary_tags=words("dietary_tags"),
            signature_foods=words("signature_foods"),
        )


# ---- text helpers ----------------------------------------------------------------


_FORMAT_CHARS = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def _clean(text: str) -> str:
    text = _FORMAT_CHARS.sub("", unicodedata.normalize("NFC", text))  # BOMs, joiners
    text = text.replace("’", "'").replace("‘", "'").replace("`", "'")
    return re.sub(r"\s+", " ", text).strip()


def _words_pattern(words: Iterable[str]) -> re.Pattern[str]:
    alternatives = sorted({re.escape(w) for w in words}, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(alternatives) + r")(?![\w-])", re.IGNORECASE)


_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
_FOREIGN_SCRIPT = re.compile(r"[^\x00-\u024f\u1e00-\u1eff\u2000-\u206f\u20a0-\u20cf\u2100-\u218f]")

_CUISINE_LABEL_PATTERNS = {name: _words_pattern(w) for name, w in lx.CUISINE_LABELS.items()}
_CUISINE_HINT_PATTERNS = {name: _words_pattern(w) for name, w in lx.CUISINE_HINTS.items()}
_CUISINE_TITLE_PATTERNS = {name: _words_pattern(w) for name, w in lx.CUISINE_TITLE_WORDS.items()}
_METHOD_PATTERNS = tuple((name, _words_pattern(words)) for name, words in lx.METHODS)
_APPLIANCES = _words_pattern(lx.APPLIANCE_PHRASES)
_DIET_PATTERN = _words_pattern(lx.DIET_PHRASES)
_TIME_AND_COUNT = re.compile(
    r"\b(?:\d+(?:[.,]\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|twenty|thirty)"
    r"\s*[-–]?\s*(?:minutes?|mins?|hours?|hrs?|ingredients?|ways?|"
    r"servings?|grams?|g|calories?|dollars?)\b|\$\s*\d+(?:[.,]\d+)?(?:\s*/\s*\w+)?|\b\d+\b",
    re.IGNORECASE,
)
_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]|\{[^}]*\}")
_TITLE_PARTS = re.compile(r"\s+[|–—-]\s+|\s*\|\s*|:\s+|\s+–\s*|\s*—\s*")
_QUANTITY = re.compile(
    r"^(?:(?:about|approx\.?|approximately|around|~|\+|-|–|/|\.|,|\"|'|”|″|×|x(?=\s*\d)|\d|"
    r"[\u00bc-\u00be\u2150-\u215e]|\s)+"
    r"|to\s+(?=\d)|a\s+few\s+|a\s+couple\s+(?:of\s+)?|an?\s+|one\s+|two\s+|three\s+|four\s+|five\s+|"
    r"six\s+|half\s+|plus\s+|and\s+|or\s+|lots\s+of\s+|some\s+|several\s+)",
    re.IGNORECASE,
)
_SIZE_IN_INCHES = re.compile(r"\b\d+(?:[.,]\d+)?\s*[-\s]?\s*(?:inch|in\.|cm)(?:es)?\b", re.I)
_UNIT = re.compile(r"^(?:" + "|".join(lx.UNITS) + r")\b\.?\s*(?:of\s+)?", re.IGNORECASE)
_DESCRIPTORS = re.compile(
    r"(?<![\w-])(?:"
    + "|".join(lx.DESCRIPTORS)
    + r"|pan[- ]fried|to serve|pur[ée]e?d|unbaked|store[- ]bought|cooked and)(?![\w-])",
    re.IGNORECASE,
)
_FORM_WORDS = frozenset({
    "cube", "cubes", "floret", "florets", "wedge", "wedges", "slice", "slices", "piece",
    "pieces", "chunk", "chunks", "strip", "strips", "half", "halves", "leaf", "leaves",
    "sprig", "sprigs", "stalk", "stalks", "segment", "segments", "ring", "rings", "bit",
    "bits", "shaving", "shavings", "round", "rounds", "spear", "spears",
})  # fmt: skip
_FILLER = frozenset({"of", "and", "or", "for", "to", "plus", "the", "a", "an", "as", "in", "on"})


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


def _tokens(text: str) -> list[str]:
    return [singular(w) for w in _WORD.findall(text.lower())]


# ---- the dish ---------------------------------------------------------------------


def _key_tokens(text: str) -> list[str]:
    """The words a dish name is matched by: dietary words, fillers, praise and
    single letters out, plurals and spellings folded."""
    text = _DIET_PATTERN.sub(" ", text)
    return [
        token
        for token in _tokens(text)
        if token not in _FILLER
        and token not in ("n", "with", "style")
        and len(token) > 1
        and token not in lx.NOISE_WORDS
    ]


# Heads by number of words, longest first, as tuples of singular tokens.
_HEADS: tuple[tuple[tuple[str, ...], str], ...] = tuple(
    sorted(
        (
            (tuple(_key_tokens(head)), course)
            for head, course in lx.DISH_HEADS.items()
            if _key_tokens(head)
        ),
        key=lambda item: -len(item[0]),
    )
)
_STANDALONE = frozenset(singular(w) for w in lx.STANDALONE_DISHES)


def _title_parts(title: str) -> list[str]:
    """A title's parts: "Caçoila | Portuguese Stewed Beef" -> two parts."""
    without = _BRACKETS.sub(" ", title)
    parts = [p.strip(" -–—|:,.!?*") for p in _TITLE_PARTS.split(without)]
    return [p for p in parts if p]


def _cut_headline(text: str) -> str:
    """ "20-Minute Chipotle Creamed Chicken Recipe Puts a Spicy Spin ..." -> before
    "Recipe": a headline goes on after the dish's name, a name goes on with "with"."""
    match = re.search(r"\brecipes?\b", text, re.IGNORECASE)
    if not match or match.start() == 0:
        return text
    rest = text[match.end() :].split()
    if len(rest) >= 3 and rest[0].lower() not in ("with", "for", "and"):
        return text[: match.start()]
    return text


def _strip_noise(text: str) -> str:
    text = _APPLIANCES.sub(" ", text)
    text = _TIME_AND_COUNT.sub(" ", text)
    words = []
    for word in re.split(r"\s+", text):
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
    parts = _title_parts(_clean(title))
    chosen = parts[0] if parts else ""
    for part in parts:
        if _find_head(_tokens(_cut_headline(part))) is not None:
            chosen = part
            break
    text = _strip_noise(_cut_headline(chosen))
    text = re.sub(r"\s+", " ", text).strip(" -–—|:,.!&+").lower()
    if not text:  # the title was nothing but noise: keep it as written
        text = _clean(_BRACKETS.sub(" ", title)).lower() or _clean(title).lower()
    return text[:MAX_DISH_CHARS].strip()


def _looks_english(title: str, recognized: float, ingredient_count: int) -> bool:
    if _FOREIGN_SCRIPT.search(title):
        return False
    # "Cacio e pepe" is English too.
    words = [
        w.lower()
        for w in _WORD.findall(_BRACKETS.sub(" ", title.lower().replace("cacio e pepe", "")))
    ]
    # A trailing "I" is a numeral ("Pumpkin Pie I"), not Norwegian.
    inner = words[:-1] if words and words[-1] == "i" else words
    if any(w in lx.FOREIGN_WORDS for w in inner):
        return False
    return ingredient_count == 0 or recognized >= MIN_RECOGNIZED_INGREDIENTS


def dish_identity(title: str, *, english: bool = True) -> tuple[str, str]:
    """(identity, head course) of a title; ("", "") when the dish is not known.

    The head is looked for in the name before "with" ("Salmon Salad with Caesar
    Dressing" is a salad); the identity is made of every word of the name.
    """
    if not english:
        return "", ""
    dish = dish_name(title)
    tokens = _key_tokens(dish)
    main = _key_tokens(re.split(r"\bwith\b", dish, maxsplit=1)[0])
    head = _find_head(main) or _find_head(tokens)
    if head is None:
        if len(tokens) == 1 and tokens[0] in _STANDALONE:
            return tokens[0], ""
        return "", ""
    if len(tokens) == 1 and tokens[0] in lx.GENERIC_HEADS:
        return "", head[2]  # "Cake": which one?
    return " ".join(sorted(tokens)), head[2]


# ---- ingredients ------------------------------------------------------------------


@functools.lru_cache(maxsize=16384)
def ingredient_name(line: str) -> str:
    """The food in an ingredient line: "1 14- ounce can of full fat coconut milk" ->
    "coconut milk". Empty when nothing is left."""
    text = _clean(line).lower()
    text = re.sub(r"^[^:]{0,30}:\s*", "", text)  # "to serve: ...", "for the sauce: ..."
    text = _BRACKETS.sub(" ", text)
    text = re.split(r"\bfor\s+(?:the\s+)?(?:serving|garnish|dusting|drizzling)\b", text)[0]
    # "1 1/2 pounds boneless, skinless chicken breasts, cut up": the first part
    # that still names something once the quantities and descriptors are gone.
    for part in re.split(r",|;|\s+[-–]\s+(?=[^\W\d_])", text):
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
        text = re.sub(r"^(?:of|to)\s+", "", text)
        if text == before:
            break
    text = _DESCRIPTORS.sub(" ", text)
    words = [w for w in _clean(text).split(" ") if w and not re.fullmatch(r"[\W\d_]+", w)]
    while words and words[0] in _FILLER:
        words.pop(0)
    while words and (words[-1] in _FILLER or words[-1] in _FORM_WORDS):
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


def canonical_food(name: str) -> str:
    """An ingredient name in the form recipes are compared by: singular words,
    folded spellings. "Cherry Tomatoes" -> "cherry tomato"."""
    return " ".join(t for t in _tokens(name) if t not in _FILLER)


def _is_food(name: str) -> bool:
    return bool(name) and bool(re.search(r"[^\W\d_]", name)) and name not in lx.STAPLES


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
    names = [_clean(title).lower(), *(ingredient_name(line) for line in lines)]
    for name in names:
        text = name
        for phrase in lx.NOT_SIGNATURE:
            text = text.replace(phrase, " ")
        for token in _tokens(text):
            signature = lx.SIGNATURE_FOODS.get(token)
            if signature:
                found.add(signature)
    return tuple(sorted(found))


_KNOWN_WORDS = frozenset(
    word
    for word in (
        lx.FOOD_WORDS
        | frozenset(singular(w) for w in lx.FOOD_WORDS)
        | frozenset(t for head in lx.DISH_HEADS for t in _tokens(head))
        | frozenset(t for w in lx.MEAT_WORDS | lx.DAIRY_WORDS | lx.GLUTEN_WORDS for t in _tokens(w))
    )
    # Short words and other languages' little words ("de") say nothing.
    if len(word) > 2 and word not in lx.FOREIGN_WORDS and word not in _FILLER
)


def recognized_share(lines: Sequence[str]) -> float:
    """The share of ingredient lines naming a food the lexicon knows."""
    names = [ingredient_name(line) for line in lines]
    names = [n for n in names if n]
    if not names:
        return 0.0
    known = sum(1 for n in names if any(t in _KNOWN_WORDS for t in _tokens(n)))
    return known / len(names)


# ---- dietary tags -------------------------------------------------------------------


def _has(text: str, words: re.Pattern[str], exceptions: re.Pattern[str] | None) -> bool:
    if exceptions is not None:
        text = exceptions.sub(" ", text)
    return words.search(text) is not None


_MEAT = (_words_pattern(lx.MEAT_WORDS), _words_pattern(lx.MEAT_EXCEPTIONS))
_DAIRY = (_words_pattern(lx.DAIRY_WORDS), _words_pattern(lx.DAIRY_EXCEPTIONS))
_EGG = (_words_pattern(lx.EGG_WORDS), _words_pattern(lx.EGG_EXCEPTIONS))
_GLUTEN = (_words_pattern(lx.GLUTEN_WORDS), _words_pattern(lx.GLUTEN_EXCEPTIONS))
_HONEY = (_words_pattern(lx.HONEY_WORDS), None)


def _stated_tags(recipe: Recipe) -> set[str]:
    texts = [recipe.title, recipe.cuisine, *recipe.categories]
    tags: set[str] = set()
    for text in texts:
        for match in _DIET_PATTERN.finditer(_clean(text).lower()):
            tags.add(lx.DIET_PHRASES[match.group(0).lower()])
    return tags


def dietary_tags(recipe: Recipe, recognized: float) -> tuple[str, ...]:
    """Tags the recipe states (title, labels), and those its ingredients show
    when enough of them are recognized: vegetarian, vegan, gluten-free,
    dairy-free."""
    tags = _stated_tags(recipe)
    names = [ingredient_name(line) for line in recipe.ingredients]
    text = " ; ".join(n for n in names if n)
    if len(names) >= MIN_INGREDIENTS_FOR_TAGS and recognized >= MIN_RECOGNIZED_FOR_TAGS:
        meat = _has(text, *_MEAT)
        dairy = _has(text, *_DAIRY)
        egg = _has(text, *_EGG)
        honey = _has(text, *_HONEY)
        gluten = _has(text, *_GLUTEN)
        if not meat:
            tags.add("vegetarian")
            if not (dairy or egg or honey):
                tags.add("vegan")
        if not dairy:
            tags.add("dairy-free")
        if not gluten:
            tags.add("gluten-free")
    changed = True
    while changed:
        changed = False
        for tag, implied in lx.DIET_IMPLIES.items():
            if tag in tags and not tags.issuperset(implied):
                tags.update(implied)
                changed = True
    return tuple(sorted(tags))


# ---- cuisine, course, method, complexity ------------------------------------------------


def _label_parts(recipe: Recipe) -> list[str]:
    parts = []
    for label in (recipe.cuisine, *recipe.categories):
        parts += [p.strip().lower() for p in label.split(",") if p.strip()]
    return parts


def _cuisine(recipe: Recipe, dish: str, ingredients_text: str) -> str:
    for part in _label_parts(recipe):
        for name, pattern in _CUISINE_LABEL_PATTERNS.items():
            if pattern.search(part):
                return name
    title = _clean(recipe.title)
    for name, pattern in _CUISINE_TITLE_PATTERNS.items():
        if pattern.search(title):
            return name
    best, best_score = UNKNOWN, 0
    for name, pattern in _CUISINE_HINT_PATTERNS.items():
        score = 3 * len(pattern.findall(dish)) + len(pattern.findall(ingredients_text))
        if score > best_score:
            best, best_score = name, score
    return best if best_score >= 2 else UNKNOWN


def label_courses(labels: Iterable[str]) -> list[str]:
    """The courses a site's labels name, in order, without repeats."""
    found: list[str] = []
    for label in labels:
        for part in label.split(","):
            course = lx.COURSE_LABELS.get(part.strip().lower())
            if course and course not in found:
                found.append(course)
    return found


_SWEET = frozenset({
    "sugar", "chocolate", "cocoa", "vanilla", "powdered sugar", "confectioners sugar",
    "frosting", "sprinkles", "caramel", "marshmallow", "condensed milk", "icing",
    "brown sugar", "honey", "maple syrup", "whipped cream", "cream cheese", "jam",
})  # fmt: skip
_SAVORY = frozenset({
    "onion", "garlic", "shallot", "chicken", "beef", "pork", "bacon", "fish", "salmon",
    "shrimp", "broth", "stock", "soy sauce", "cumin", "black pepper", "pepper", "oregano",
    "thyme", "parmesan", "cheddar", "sausage", "ham", "turkey", "tomato",
})  # fmt: skip


def _course(recipe: Recipe, identity_tokens: Sequence[str], head_course: str) -> str:
    from_labels = label_courses(recipe.categories)
    if from_labels:
        # "Lunch, Soup" for a soup: the label that agrees with the dish wins.
        return head_course if head_course in from_labels else from_labels[0]
    if head_course:
        savory = any(t in lx.SAVORY_PIE_WORDS or t in lx.MEAT_WORDS for t in identity_tokens)
        if head_course == "dessert" and savory:
            return "main course"
        return head_course
    foods = {canonical_food(ingredient_name(line)) for line in recipe.ingredients}
    sweet = len(foods & _SWEET)
    savory = len(foods & _SAVORY)
    if sweet >= 2 and savory == 0:
        return "dessert"
    return UNKNOWN


def _cooking_method(recipe: Recipe) -> str:
    for name, pattern in _METHOD_PATTERNS:
        if pattern.search(recipe.title):
            return name
    instructions = " ".join(recipe.instructions)
    best, best_count = UNKNOWN, 0
    for name, pattern in _METHOD_PATTERNS:
        count = len(pattern.findall(instructions))
        if count > best_count:
            best, best_count = name, count
    return best


def _complexity(recipe: Recipe) -> str:
    """simple, moderate or complex, from how many ingredients and steps it takes."""
    ingredients = len([line for line in recipe.ingredients if line.strip()])
    steps = len([step for step in recipe.instructions if step.strip()])
    words = sum(len(step.split()) for step in recipe.instructions)
    if ingredients == 0 and steps == 0:
        return UNKNOWN
    if ingredients >= 15 or steps >= 10 or words >= 450:
        return "complex"
    if ingredients <= 6 and steps <= 4 and words <= 120:
        return "simple"
    return "moderate"


def analyze(recipe: Recipe) -> RecipeContext:
    title = _clean(recipe.title)
    dish = dish_name(title) if title else ""
    recognized = recognized_share(recipe.ingredients)
    english = _looks_english(title, recognized, len(recipe.ingredients))
    identity, head_course = dish_identity(title, english=english) if title else ("", "")
    ingredients_text = " ; ".join(ingredient_name(line) for line in recipe.ingredients)
    return RecipeContext(
        dish=dish,
        dish_identity=identity,
        cuisine=_cuisine(recipe, dish, ingredients_text),
        course=_course(recipe, _key_tokens(dish), head_course),
        main_ingredients=main_ingredients(recipe.ingredients),
        defining_ingredients=defining_ingredients(recipe.ingredients),
        cooking_method=_cooking_method(recipe),
        complexity=_complexity(recipe),
        # Tags are inferred from ingredients only when they are read as English.
        dietary_tags=dietary_tags(recipe, recognized if english else 0.0),
        signature_foods=signature_foods(title, recipe.ingredients),
    )
