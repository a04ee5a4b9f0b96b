"""Recipe context analysis: what dish a recipe is, so the photo shows that dish.

Keyword rules over the title, the site's labels, the ingredient lines and the
instructions, with the words in lexicon.py (the dish's name in dish.py, the
ingredient lines in ingredients.py, words in text.py). English only: what
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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from services.image.recipes import lexicon as lx
from services.image.recipes import text as tx
from services.image.recipes import vocabulary as vc
from services.image.recipes.canonical import KNOWN_WORDS, dish_identity, implied_tags, title_tags
from services.image.recipes.dish import DIET_PATTERN, dish_name, key_tokens, looks_english
from services.image.recipes.ingredients import (
    canonical_food,
    defining_ingredients,
    ingredient_name,
    main_ingredients,
    recognized_share,
    signature_foods,
)
from services.image.recipes.lexicon import UNKNOWN

# The format of dish_identity and of the similar-dish key (similarity.match_key):
# a context stored under another version is never matched to a new one.
IDENTITY_VERSION = 2
# Animal foods an ingredient list shows, which a vegan or vegetarian promise forbids.
ANIMAL_FOODS = ("dairy", "egg", "meat")

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
    # The dietary variant the title states ("Vegan Chocolate Cake"), sorted: in the key.
    variant_tags: tuple[str, ...] = field(default_factory=tuple)
    # Tags the title or the site's labels state (not inferred), sorted.
    stated_tags: tuple[str, ...] = field(default_factory=tuple)
    # Which of ANIMAL_FOODS the ingredient lines name, sorted ("" lines: none known).
    animal_foods: tuple[str, ...] = field(default_factory=tuple)
    # IDENTITY_VERSION of the analyzer that made dish_identity (1: before versions).
    identity_version: int = IDENTITY_VERSION

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
            "variant_tags": list(self.variant_tags),
            "stated_tags": list(self.stated_tags),
            "animal_foods": list(self.animal_foods),
            "identity_version": self.identity_version,
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
            variant_tags=words("variant_tags"),
            stated_tags=words("stated_tags"),
            animal_foods=words("animal_foods"),
            identity_version=_version(raw.get("identity_version")),
        )


def _version(value: object) -> int:
    """A stored context's identity version; 1 for one stored before versions."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


_CUISINE_LABEL_PATTERNS = {name: tx.Words(w) for name, w in lx.CUISINE_LABELS.items()}
_CUISINE_HINT_PATTERNS = {name: tx.Words(w) for name, w in lx.CUISINE_HINTS.items()}
_CUISINE_TITLE_PATTERNS = {name: tx.Words(w) for name, w in lx.CUISINE_TITLE_WORDS.items()}
_METHOD_PATTERNS = tuple((name, tx.Words(words)) for name, words in lx.METHODS)
# ---- dietary tags -------------------------------------------------------------------


def _has(scan: tx.Scan, words: tx.Words, exceptions: tx.Words | None) -> bool:
    if exceptions is not None and exceptions.search(scan):
        return words.pattern.search(exceptions.pattern.sub(" ", scan.text)) is not None
    return words.search(scan)


_MEAT = (tx.Words(lx.MEAT_WORDS), tx.Words(lx.MEAT_EXCEPTIONS))
_DAIRY = (tx.Words(lx.DAIRY_WORDS), tx.Words(lx.DAIRY_EXCEPTIONS))
_EGG = (tx.Words(lx.EGG_WORDS), tx.Words(lx.EGG_EXCEPTIONS))
_GLUTEN = (tx.Words(lx.GLUTEN_WORDS), tx.Words(lx.GLUTEN_EXCEPTIONS))
_HONEY = (tx.Words(lx.HONEY_WORDS), None)
# Every table above, found in a text in one pass (text.Scanner).
SCANNER = tx.Scanner(
    [
        *_CUISINE_LABEL_PATTERNS.values(),
        *_CUISINE_HINT_PATTERNS.values(),
        *_CUISINE_TITLE_PATTERNS.values(),
        *(words for _, words in _METHOD_PATTERNS),
        *(words for table in (_MEAT, _DAIRY, _EGG, _GLUTEN, _HONEY) for words in table if words),
    ]
)


def stated_tags(recipe: Recipe) -> set[str]:
    """The tags the title and the site's labels state, with what they imply."""
    texts = [recipe.title, recipe.cuisine, *recipe.categories]
    tags: set[str] = set()
    for text in texts:
        for match in DIET_PATTERN.finditer(tx.clean(text).lower()):
            tags.add(lx.DIET_PHRASES[match.group(0).lower()])
    return implied_tags(tags)


def animal_foods(recipe: Recipe) -> tuple[str, ...]:
    """Which animal foods the ingredient lines name: a positive reading only
    (a line the analyzer cannot read names nothing), optional lines left out."""
    # An optional food is not in the picture the prompt describes.
    lines = [line for line in recipe.ingredients if "optional" not in line.lower()]
    scan = SCANNER.scan(" ; ".join(n for n in (ingredient_name(line) for line in lines) if n))
    found = {"meat": _has(scan, *_MEAT), "dairy": _has(scan, *_DAIRY), "egg": _has(scan, *_EGG)}
    return tuple(sorted(name for name, present in found.items() if present))


def dietary_tags(
    recipe: Recipe, recognized: float, stated: set[str] | None = None
) -> tuple[str, ...]:
    """Tags the recipe states (title, labels), and those its ingredients show
    when enough of them are recognized: vegetarian, vegan, gluten-free,
    dairy-free."""
    tags = set(stated_tags(recipe) if stated is None else stated)
    names = [ingredient_name(line) for line in recipe.ingredients]
    if len(names) >= MIN_INGREDIENTS_FOR_TAGS and recognized >= MIN_RECOGNIZED_FOR_TAGS:
        scan = SCANNER.scan(" ; ".join(n for n in names if n))
        meat = _has(scan, *_MEAT)
        dairy = _has(scan, *_DAIRY)
        egg = _has(scan, *_EGG)
        honey = _has(scan, *_HONEY)
        gluten = _has(scan, *_GLUTEN)
        if not meat:
            tags.add("vegetarian")
            if not (dairy or egg or honey):
                tags.add("vegan")
        if not dairy:
            tags.add("dairy-free")
        if not gluten:
            tags.add("gluten-free")
    return tuple(sorted(implied_tags(tags)))


# ---- cuisine, course, method, complexity ------------------------------------------------


def _label_parts(recipe: Recipe) -> list[str]:
    parts = []
    for label in (recipe.cuisine, *recipe.categories):
        parts += [p.strip().lower() for p in label.split(",") if p.strip()]
    return parts


def _cuisine(recipe: Recipe, dish: str, ingredients_text: str) -> str:
    for part in _label_parts(recipe):
        scan = SCANNER.scan(part)
        for name, pattern in _CUISINE_LABEL_PATTERNS.items():
            if pattern.search(scan):
                return name
    title = SCANNER.scan(tx.clean(recipe.title))
    for name, pattern in _CUISINE_TITLE_PATTERNS.items():
        if pattern.search(title):
            return name
    best, best_score = UNKNOWN, 0
    dish_scan, ingredients = SCANNER.scan(dish), SCANNER.scan(ingredients_text)
    for name, pattern in _CUISINE_HINT_PATTERNS.items():
        score = 3 * pattern.count(dish_scan) + pattern.count(ingredients)
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
        savory_dish = any(t in lx.SAVORY_PIE_WORDS or t in lx.MEAT_WORDS for t in identity_tokens)
        if head_course == "dessert" and savory_dish:
            return "main course"
        return head_course
    foods = {canonical_food(ingredient_name(line)) for line in recipe.ingredients}
    sweet = len(foods & _SWEET)
    savory = len(foods & _SAVORY)
    if sweet >= 2 and savory == 0:
        return "dessert"
    return UNKNOWN


def _cooking_method(recipe: Recipe) -> str:
    title = SCANNER.scan(recipe.title)
    for name, pattern in _METHOD_PATTERNS:
        if pattern.search(title):
            return name
    instructions = SCANNER.scan(" ".join(recipe.instructions))
    best, best_count = UNKNOWN, 0
    for name, pattern in _METHOD_PATTERNS:
        count = pattern.count(instructions)
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
    title = tx.clean(recipe.title)
    dish = dish_name(title) if title else ""
    recognized = recognized_share(recipe.ingredients)
    english = looks_english(title, recognized, len(recipe.ingredients))
    identity, head_course = dish_identity(title) if title else ("", "")
    ingredients_text = " ; ".join(ingredient_name(line) for line in recipe.ingredients)
    foods = defining_ingredients(recipe.ingredients)
    stated = stated_tags(recipe)
    return RecipeContext(
        dish=dish,
        dish_identity=identity,
        cuisine=_cuisine(recipe, dish, ingredients_text),
        course=_course(recipe, key_tokens(dish), head_course),
        main_ingredients=main_ingredients(recipe.ingredients),
        # Foods of a list the analyzer cannot read say nothing: none, not other ones.
        defining_ingredients=foods if english else _readable(foods),
        cooking_method=_cooking_method(recipe),
        complexity=_complexity(recipe),
        # Tags are inferred from ingredients only when they are read as English.
        dietary_tags=dietary_tags(recipe, recognized if english else 0.0, stated),
        signature_foods=signature_foods(" ".join(vc.words(title)), recipe.ingredients),
        variant_tags=title_tags(title),
        stated_tags=tuple(sorted(stated)),
        animal_foods=animal_foods(recipe),
    )


def _readable(foods: Sequence[str]) -> tuple[str, ...]:
    """The foods of another language's list that are English words throughout."""
    return tuple(f for f in foods if all(w in KNOWN_WORDS for w in f.split()))
