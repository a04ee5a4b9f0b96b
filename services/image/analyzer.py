"""Recipe context analysis: what dish a recipe is, so the photo shows that dish.

A first, honest version: keyword rules over the title, the labels, the
ingredient lines and the instructions, in English. What it cannot tell it
leaves empty instead of guessing (a prompt without a cuisine is better than a
prompt with the wrong one). Deterministic: the same recipe always gives the
same context, which the exact cache depends on.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

MAX_MAIN_INGREDIENTS = 4
MAX_DISH_CHARS = 120
MAX_INGREDIENT_CHARS = 40


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
    """What the photo is of. Empty strings mean "could not tell"."""

    dish: str
    cuisine: str = ""
    course: str = ""
    main_ingredients: tuple[str, ...] = field(default_factory=tuple)
    cooking_method: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "dish": self.dish,
            "cuisine": self.cuisine,
            "course": self.course,
            "main_ingredients": list(self.main_ingredients),
            "cooking_method": self.cooking_method,
        }


# ---- cuisine ---------------------------------------------------------------------

# fmt: off

# Canonical name -> words that name it in a label ("Italian", "Tex-Mex").
_CUISINE_LABELS: dict[str, tuple[str, ...]] = {
    "Italian": ("italian", "italiana", "italienne"),
    "Mexican": ("mexican", "mexicana", "tex-mex", "tex mex"),
    "French": ("french", "française", "francaise"),
    "Spanish": ("spanish", "española", "espanola"),
    "Greek": ("greek",),
    "Middle Eastern": ("middle eastern", "lebanese", "israeli", "persian", "turkish"),
    "Indian": ("indian",),
    "Thai": ("thai",),
    "Vietnamese": ("vietnamese",),
    "Chinese": ("chinese",),
    "Japanese": ("japanese",),
    "Korean": ("korean",),
    "Moroccan": ("moroccan", "north african"),
    "Mediterranean": ("mediterranean",),
    "American": ("american", "southern", "cajun", "creole"),
    "British": ("british", "english", "irish", "scottish"),
    "German": ("german", "austrian"),
    "Caribbean": ("caribbean", "jamaican", "cuban"),
    "Latin American": ("brazilian", "peruvian", "argentinian", "colombian", "latin american"),
    "Filipino": ("filipino",),
    "Indonesian": ("indonesian", "malaysian"),
    "Scandinavian": ("scandinavian", "swedish", "norwegian", "danish"),
    "Eastern European": ("polish", "russian", "ukrainian", "hungarian"),
}

# Dish and ingredient words that point at a cuisine. A title word counts three
# times an ingredient word; ingredients alone need two hits.
_CUISINE_HINTS: dict[str, tuple[str, ...]] = {
    "Italian": (
        "pasta", "spaghetti", "lasagna", "lasagne", "risotto", "pizza", "gnocchi", "pesto",
        "parmesan", "parmigiano", "mozzarella", "ricotta", "prosciutto", "bruschetta",
        "carbonara", "bolognese", "tiramisu", "focaccia", "penne", "fettuccine", "ravioli",
    ),
    "Mexican": (
        "taco", "tacos", "tortilla", "tortillas", "enchilada", "enchiladas", "quesadilla",
        "salsa", "guacamole", "jalapeno", "jalapeño", "chipotle", "burrito", "tamales",
        "pozole", "mole", "cotija", "queso", "fajitas",
    ),
    "Indian": (
        "curry", "masala", "tikka", "tandoori", "dal", "dhal", "paneer", "naan", "biryani",
        "garam masala", "turmeric", "ghee", "chana", "samosa", "korma", "vindaloo",
    ),
    "Japanese": (
        "miso", "sushi", "teriyaki", "ramen", "dashi", "mirin", "tempura", "udon", "soba",
        "katsu", "matcha", "nori",
    ),
    "Korean": ("kimchi", "gochujang", "bulgogi", "bibimbap", "gochugaru", "japchae"),
    "Thai": ("pad thai", "lemongrass", "thai basil", "green curry", "red curry", "tom yum"),
    "Vietnamese": ("pho", "banh mi", "rice paper", "nuoc cham"),
    "Chinese": (
        "stir-fry", "stir fry", "wok", "hoisin", "bok choy", "dumplings", "wontons",
        "kung pao", "szechuan", "sichuan", "chow mein", "lo mein", "five-spice",
    ),
    "Greek": ("feta", "tzatziki", "gyro", "gyros", "souvlaki", "spanakopita", "moussaka"),
    "Spanish": ("paella", "chorizo", "tapas", "gazpacho", "manchego", "patatas bravas"),
    "Middle Eastern": (
        "hummus", "tahini", "falafel", "za'atar", "zaatar", "shakshuka", "tabbouleh",
        "sumac", "pita", "shawarma", "baba ganoush",
    ),
    "French": ("ratatouille", "quiche", "crepe", "crepes", "gratin", "bourguignon", "souffle"),
    "Moroccan": ("tagine", "harissa", "couscous", "ras el hanout", "preserved lemon"),
}

# ---- course -----------------------------------------------------------------------

# Canonical course -> words in labels or the title. Order matters: the first
# course with a hit wins ("chocolate soup" is a soup, "soup dumplings" then too).
_COURSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("drink", (
        "drink", "drinks", "beverage", "beverages", "cocktail", "cocktails", "smoothie",
        "smoothies", "lemonade", "latte", "tea", "punch", "milkshake", "shake",
    )),
    ("soup", ("soup", "soups", "stew", "stews", "chowder", "bisque", "broth", "chili")),
    ("salad", ("salad", "salads", "slaw", "coleslaw")),
    ("dessert", (
        "dessert", "desserts", "cake", "cakes", "cookie", "cookies", "brownie", "brownies",
        "pie", "tart", "pudding", "ice cream", "cheesecake", "cupcake", "cupcakes", "fudge",
        "sorbet", "mousse", "crumble", "cobbler", "candy", "sweets", "tiramisu",
    )),
    ("breakfast", (
        "breakfast", "brunch", "pancake", "pancakes", "waffle", "waffles", "omelet",
        "omelette", "granola", "oatmeal", "porridge", "frittata",
    )),
    ("bread", (
        "bread", "breads", "loaf", "focaccia", "rolls", "buns", "biscuits", "scones",
        "muffin", "muffins", "bagels",
    )),
    ("appetizer", (
        "appetizer", "appetizers", "starter", "starters", "snack", "snacks", "dip", "dips",
        "finger food", "hors d'oeuvres", "canapes",
    )),
    ("side dish", ("side", "sides", "side dish", "side dishes")),
    ("sauce", ("sauce", "sauces", "condiment", "condiments", "dressing", "marinade")),
    ("main course", (
        "main", "main course", "main dish", "mains", "dinner", "entree", "entrée", "lunch",
    )),
)

# ---- cooking method ---------------------------------------------------------------

# Method -> words in the title or instructions. The title decides when it names
# one; otherwise the most mentioned, ties going to the earlier entry.
_METHODS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("slow-cooked", ("slow cooker", "slow-cooker", "crock pot", "crockpot", "slow cook")),
    ("air-fried", ("air fryer", "air-fryer", "air fry", "air fried", "air-fried")),
    ("deep-fried", ("deep fry", "deep-fry", "deep fried", "deep-fried")),
    ("stir-fried", ("stir-fry", "stir fry", "stir-fried", "stir fried")),
    ("grilled", ("grill", "grilled", "grilling", "barbecue", "bbq", "char")),
    ("smoked", ("smoke", "smoked", "smoker")),
    ("roasted", ("roast", "roasted", "roasting")),
    ("baked", ("bake", "baked", "baking", "oven")),
    ("braised", ("braise", "braised", "braising")),
    ("pan-fried", ("fry", "fried", "frying", "saute", "sauté", "sauteed", "sautéed", "sear")),
    ("steamed", ("steam", "steamed", "steaming")),
    ("simmered", ("simmer", "simmered", "simmering", "boil", "boiled", "boiling")),
    ("blended", ("blend", "blender", "puree", "purée", "food processor")),
    ("chilled", ("chill", "refrigerate", "freeze", "no-bake", "no bake")),
)

# ---- ingredients ------------------------------------------------------------------

_UNITS = (
    "cups?", "c", "tablespoons?", "tbsps?", "tbs", "tbl", "teaspoons?", "tsps?", "ounces?",
    "oz", "fl oz", "pounds?", "lbs?", "grams?", "g", "kilograms?", "kg", "milliliters?",
    "millilitres?", "ml", "liters?", "litres?", "l", "cloves?", "cans?", "jars?", "packages?",
    "pkgs?", "packets?", "bags?", "boxes", "box", "pinch(?:es)?", "dash(?:es)?",
    "handfuls?", "slices?", "sticks?", "heads?", "bunch(?:es)?", "sprigs?", "pieces?",
    "stalks?", "quarts?", "pints?", "drops?", "sheets?", "fillets?", "large", "medium",
    "small", "whole", "big", "heaped", "heaping", "level", "scant", "recipes?", "batch(?:es)?",
    "containers?", "dl", "cl", "msk", "tsk", "krm", "tl", "el",
)
_QUANTITY = re.compile(
    r"^(?:(?:about|approx\.?|approximately|~|\+|-|–|/|\.|,|\"|'|”|″|\d|[\u00bc-\u00be\u2150-\u215e]|\s)+"
    r"|a\s+few\s+|a\s+couple\s+(?:of\s+)?|an?\s+|one\s+|two\s+|three\s+|four\s+|half\s+)",
    re.IGNORECASE,
)
_UNIT = re.compile(r"^(?:" + "|".join(_UNITS) + r")\b\.?\s*(?:of\s+)?", re.IGNORECASE)
_DESCRIPTORS = re.compile(
    r"\b(?:fresh(?:ly)?|chopped|minced|diced|sliced|grated|shredded|crushed|ground|"
    r"peeled|seeded|pitted|cubed|halved|quartered|trimmed|rinsed|drained|softened|melted|"
    r"room temperature|finely|roughly|coarsely|thinly|thickly|full[- ]fat|low[- ]fat|"
    r"fine[- ]grain|extra[- ]virgin|boneless|skinless|unsalted|salted|organic|optional|"
    r"large|small|medium|ripe|raw|cooked|frozen|dried|canned|to taste|plus more|"
    r"divided|packed|lightly|heaping|good quality|store[- ]bought|homemade)\b",
    re.IGNORECASE,
)
# What nearly every recipe has and no photo shows.
_STAPLES = frozenset(
    {
        "salt", "sea salt", "kosher salt", "table salt", "pepper", "black pepper",
        "salt and pepper", "salt & pepper", "water", "ice", "oil", "olive oil",
        "vegetable oil", "canola oil", "cooking spray", "sugar", "granulated sugar",
        "brown sugar", "flour", "all-purpose flour", "all purpose flour", "butter",
        "baking soda", "baking powder", "vanilla", "vanilla extract", "yeast",
        "cornstarch", "corn starch", "cold water", "warm water", "hot water", "eggs", "egg",
        "milk", "neutral oil", "nonstick spray", "pepper to taste", "salt to taste",
    }
)

_TITLE_NOISE = re.compile(
    r"\b(?:my|our|mom'?s|grandma'?s|the|best|ever|favou?rite|easy|easiest|quick|quickest|"
    r"simple|super|healthy|homemade|perfect|ultimate|classic|amazing|delicious|famous|"
    r"recipe|recipes|how to make)\b",
    re.IGNORECASE,
)

# fmt: on


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    return re.sub(r"\s+", " ", text).strip()


def _words_pattern(words: Iterable[str]) -> re.Pattern[str]:
    alternatives = sorted({re.escape(w) for w in words}, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(alternatives) + r")(?![\w-])", re.IGNORECASE)


_CUISINE_LABEL_PATTERNS = {name: _words_pattern(words) for name, words in _CUISINE_LABELS.items()}
_CUISINE_HINT_PATTERNS = {name: _words_pattern(words) for name, words in _CUISINE_HINTS.items()}
_COURSE_PATTERNS = tuple((name, _words_pattern(words)) for name, words in _COURSES)
_METHOD_PATTERNS = tuple((name, _words_pattern(words)) for name, words in _METHODS)


def dish_name(title: str) -> str:
    """The title without brackets, "Recipe" and praise: "My Favorite Pumpkin Bread (x)"
    -> "pumpkin bread"."""
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", title)
    text = _TITLE_NOISE.sub(" ", text)
    text = re.sub(r"\s+[-–—|:]\s*$", "", _clean(text))
    text = text.strip(" -–—|:,.!").lower()
    if not text:  # the title was nothing but noise: keep it as written
        text = _clean(title).lower()
    return text[:MAX_DISH_CHARS].strip()


def ingredient_name(line: str) -> str:
    """The food in an ingredient line: "1 14- ounce can of full fat coconut milk" ->
    "coconut milk". Empty when nothing is left."""
    text = _clean(line).lower()
    text = re.sub(r"^[^:]{0,30}:\s*", "", text)  # "to serve: ...", "for the sauce: ..."
    text = re.sub(r"\([^)]*\)", " ", text)
    text = text.split(",", 1)[0]
    for _ in range(4):  # quantities and units interleave: "1 14-ounce can of"
        before = text
        text = _QUANTITY.sub("", text).strip()
        text = _UNIT.sub("", text).strip()
        if text == before:
            break
    text = _DESCRIPTORS.sub(" ", text)
    text = re.sub(r"^(?:of|and|or)\s+", "", _clean(text))
    text = re.sub(r"\s+(?:or|and|for|to|plus)\s*$", "", text)
    return text.strip(" .-–*")[:MAX_INGREDIENT_CHARS].strip()


def main_ingredients(lines: Sequence[str], limit: int = MAX_MAIN_INGREDIENTS) -> tuple[str, ...]:
    """The first few distinct non-staple ingredients, in the recipe's order."""
    found: list[str] = []
    for line in lines:
        name = ingredient_name(line)
        if not name or name in _STAPLES or name in found or not re.search(r"[^\W\d_]", name):
            continue
        found.append(name)
        if len(found) == limit:
            break
    return tuple(found)


def _cuisine(recipe: Recipe, ingredients_text: str) -> str:
    labels = [recipe.cuisine, *recipe.categories]
    for label in labels:
        for part in label.split(","):
            for name, pattern in _CUISINE_LABEL_PATTERNS.items():
                if pattern.search(part):
                    return name
    best, best_score = "", 0
    for name, pattern in _CUISINE_HINT_PATTERNS.items():
        score = 3 * len(pattern.findall(recipe.title)) + len(pattern.findall(ingredients_text))
        if score > best_score:
            best, best_score = name, score
    return best if best_score >= 2 else ""


def _course(recipe: Recipe) -> str:
    labels = " , ".join(recipe.categories)
    for text in (labels, recipe.title):
        for name, pattern in _COURSE_PATTERNS:
            if pattern.search(text):
                return name
    return ""


def _cooking_method(recipe: Recipe) -> str:
    for name, pattern in _METHOD_PATTERNS:
        if pattern.search(recipe.title):
            return name
    instructions = " ".join(recipe.instructions)
    best, best_count = "", 0
    for name, pattern in _METHOD_PATTERNS:
        count = len(pattern.findall(instructions))
        if count > best_count:
            best, best_count = name, count
    return best


def analyze(recipe: Recipe) -> RecipeContext:
    return RecipeContext(
        dish=dish_name(recipe.title),
        cuisine=_cuisine(recipe, " ; ".join(recipe.ingredients)),
        course=_course(recipe),
        main_ingredients=main_ingredients(recipe.ingredients),
        cooking_method=_cooking_method(recipe),
    )
