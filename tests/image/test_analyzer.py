"""The recipe context analyzer: plain functions, and the 828 real recipes of
../shared/data/recipes-dev.jsonl (agreement with the sites' own labels)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from services.image.recipes import lexicon
from services.image.recipes import text as tx
from services.image.recipes import vocabulary as vc
from services.image.recipes.analyzer import Recipe, RecipeContext, analyze, label_courses
from services.image.recipes.canonical import KNOWN_WORDS, dish_identity
from services.image.recipes.dish import dish_name
from services.image.recipes.ingredients import ingredient_name
from services.image.recipes.lexicon import UNKNOWN
from tests.image.conftest import labels, plain_recipe

RECIPES = Path(__file__).resolve().parents[3] / "shared" / "data" / "recipes-dev.jsonl"

SOUP = Recipe(
    title="Broccoli Soup with Coconut Milk",
    ingredients=(
        "1 14- ounce can of full fat coconut milk",
        "3 cloves garlic, smashed",
        "2 teaspoons fine grain sea salt",
        "4 1/2 cups water",
        "2-3 large heads of broccoli (~1 1/2 lb.), cut into small florets",
        "to serve: lots of pan-fried tofu cubes, toasted almonds",
    ),
    instructions=(
        "Add it to a large pan over medium-high heat. Sauté for a couple minutes.",
        "Bring to a simmer before adding the broccoli. Simmer until tender.",
        "Puree with an immersion blender.",
    ),
    categories=("Lunch", "Soup"),
    cuisine="California,Easy,Vegan,Vegetarian",
)


def real_recipes() -> list[dict]:  # type: ignore[type-arg]
    """The shared sample, or a skip (a failure under CI) when it is absent."""
    if not RECIPES.exists():
        message = f"{RECIPES} is missing (the shared 828-recipe sample, ../shared/data)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return [json.loads(line) for line in RECIPES.read_text(encoding="utf-8").splitlines()]


# ---- ingredient lines --------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("1 14- ounce can of full fat coconut milk", "coconut milk"),
        ("3 cloves garlic, smashed", "garlic"),
        ("2-3 large heads of broccoli (~1 1/2 lb.), cut into small florets", "broccoli"),
        ("½ cup freshly grated parmesan", "parmesan"),
        ("to serve: lots of pan-fried tofu cubes, toasted almonds", "tofu"),
        ("200 g spaghetti", "spaghetti"),
        ("Salt", "salt"),
        ("1 1/2 pounds boneless, skinless chicken breasts, cut into cubes", "chicken breasts"),
        ("2 - 15 oz cans pumpkin puree", "pumpkin puree"),
        ("1 unbaked 9-inch pie shell", "pie shell"),
        ("One 1-Ib / 455g piece kabocha squash, seeded", "kabocha squash"),
        ("1 cup plus 1 tablespoon / 235 g extra-virgin olive oil, plus more", "olive oil"),
        ("1 to 1 1/4 lb. Chicken Breast", "chicken breast"),
        ("1/2 cup cherry or grape tomatoes", "cherry tomatoes"),
        ("2 cups veggie stock or chicken stock", "veggie stock"),
        ("", ""),
        ("1 1/2", ""),
    ],
)
def test_ingredient_lines_reduce_to_the_food_they_name(line: str, name: str) -> None:
    assert ingredient_name(line) == name


# ---- the dish and its identity ---------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "dish"),
    [
        ("My Favorite Pumpkin Bread (Kabocha + Dark Chocolate)", "pumpkin bread"),
        ("The Best Vegan Chocolate Cake Recipe", "vegan chocolate cake"),
        ("Easy Instant Pot Mac and Cheese", "mac and cheese"),
        ("15-Minute Honey Garlic Chicken", "honey garlic chicken"),
        ("Caçoila | Portuguese Stewed Beef", "portuguese stewed beef"),
        ("20-Minute Chipotle Creamed Chicken Recipe Puts a Spicy Spin on Comfort Food",
         "chipotle creamed chicken"),
        ("Easy", "easy"),  # nothing but praise: kept as written
        ("Tourte fine à l'agneau", "tourte fine à l'agneau"),
    ],
)  # fmt: skip
def test_the_dish_is_the_title_without_praise_appliances_or_counts(title: str, dish: str) -> None:
    assert dish_name(title) == dish


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Easy Instant Pot Mac and Cheese", "Crockpot Macaroni & Cheese"),
        ("15-Minute Honey Garlic Chicken", "Honey Garlic Chicken"),
        ("Emeril's Famous Banana Cream Pie", "Banana Cream Pie Recipe"),
        ("Chicken Bacon Ranch", "Bacon Ranch Chicken"),
        ("Pumpkin Pie I", "Best Ever Pumpkin Pie Recipe"),
        # praise, textures, people, brands and chains
        ("The Best Banana Bread Ever", "Moist Banana Bread"),
        ("Grandma's Famous Apple Pie", "Betty Crocker Classic Apple Pie"),
        ("Fudgy Brownies", "Best Ever Chewy Brownies"),
        ("Chocolate Cream Cold Brew (Starbucks Copycat)", "Chocolate Cream Cold Brew"),
        ("Homemade Cinnamon Rolls Recipe by Tasty", "Cinnamon Rolls"),
        ("Tortilla de patatas por Joseba Arguiñano", "Spanish Omelette"),
        # the same picture under another name
        ("Honey Glazed Salmon", "Salmon with Honey Glaze"),
        ("Crispy Breaded Pork Cutlets", "Pork Schnitzel"),
        ("Breaded Turkey Cutlets", "Turkey Schnitzel"),
        ("Hot Cocoa", "Hot Chocolate"),
        ("Baked Chicken and Cheese Taquitos", "Chicken Taquitos"),
        # a dish's own cuisine adds nothing; another cuisine does (below)
        ("Polish Pierogi", "Pierogi"),
        ("Instant Pot Vietnamese Chicken Pho", "Authentic Chicken Pho"),
        # other languages and spellings
        ("Coq au vin", "Chicken Braised in Red Wine"),
        ("Tortilla española", "Spanish omelet"),
        ("Sopa de tomate", "Tomato Soup"),
        ("Soupe à la tomate", "Tomatensuppe"),
        ("Shakshouka", "Shakshuka"),
        ("Bœuf bourguignon", "Beef Bourguignon"),
        ("Bolo de chocolate simples", "Chocolate Cake"),
        ("Torta al cioccolato", "Schokoladenkuchen"),
        ("Csokis kuglóf", "Chocolate Bundt Cake"),
        ("Tarte aux fraises facile et rapide", "Strawberry Tart"),
        ("Butter chicken på 20 minutter", "Butter Chicken"),
        ("親子丼", "Oyakodon"),
        ("김치찌개", "Kimchi Jjigae"),
        ("カレーライス", "Japanese Curry"),
        ("Wiener Schnitzel", "Breaded Veal Cutlet"),
        ("Rinderstroganoff", "Beef Stroganoff"),
        ("Appeltaart", "Apple Pie"),
    ],
)
def test_names_of_one_dish_have_one_identity(a: str, b: str) -> None:
    assert dish_identity(a)[0] == dish_identity(b)[0] != ""


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Chicken Bacon Ranch", "Chicken Bacon Ranch Pasta"),
        ("Korean Fried Chicken", "Chicken Fried Chicken"),
        ("Korean Fried Chicken", "Fried Chicken"),
        ("Fried Chicken", "Chicken Fried Chicken"),
        ("Chocolate Cake", "Chocolate Pudding Cake"),
        ("Chocolate Cake", "German Chocolate Cake"),
        ("Chocolate Cake", "Double Chocolate Bundt Cake"),
        ("Banana Cream Pie", "Banana Cake"),
        ("Pumpkin Bread", "Pumpkin Cake"),
        ("Pumpkin Pie", "Pumpkin Cake"),
        ("Mini Cheesecakes", "Cheesecake"),
        ("Salmon", "Salmon with Garlic Cream Sauce"),
        ("Chicken Curry", "Lamb Curry"),
        ("Apple Pie", "Cherry Pie"),
        ("Beef Stroganoff", "Strogonoff de Frango"),
        ("Beef Stroganoff", "Estrogonofe de cogumelos"),
        ("Gazpacho", "Salmorejo"),
        ("Tarte aux fraises", "Tarte à la rhubarbe"),
        ("Chicken Taquitos", "Beef Taquitos"),
        ("Shakshuka", "Green Shakshuka"),
        ("Greek Salad", "Caesar Salad"),
        ("Sopa de tomate", "Tomato Sauce"),
        ("Seafood Paella", "Paella"),
        ("Beef Pho", "Chicken Pho"),
        ("Chicken Curry", "Chickpea Curry"),
        ("Chicken Tikka", "Chicken Tikka Masala"),
        ("Carrot Cake", "Carrot Cake Cupcakes"),
        ("Pumpkin Pie", "Sweet Potato Pie"),
        ("Caesar Salad", "Chicken Caesar Salad"),
        ("Apple Crisp", "Apple Crumble"),
        ("Chicken Tenders", "Fried Chicken"),
        ("Käsespätzle", "Spätzle"),
        ("Tarta de queso", "Tarta de manzana"),
        ("Gâteau au chocolat", "Mousse au chocolat"),
    ],
)
def test_names_of_different_dishes_have_different_identities(a: str, b: str) -> None:
    assert dish_identity(a)[0] != dish_identity(b)[0]


@pytest.mark.parametrize(
    "title",
    ["Faux Gras", "Lau Chingri", "Kubaneh", "Banketstaaf", "Texas Caviar", "", "Chicken", "Cake"],
)
def test_a_name_without_a_known_dish_word_has_no_identity(title: str) -> None:
    assert dish_identity(title)[0] == ""


@pytest.mark.parametrize(
    ("title", "identity"),
    [
        ("Tarte aux fraises facile et rapide", "strawberry tart"),
        ("Receta de albóndigas en salsa de tomate", "meatball salsa tomato"),
        ("Lasagne al radicchio e formaggio", "cheese lasagna radicchio"),
        ("Empadão de carne", "cottage pie"),
        ("Filet de saumon au four", "baked salmon"),
        # Words the vocabulary does not know, or a language it does not read: unknown.
        ("Pasta med tomat och aubergine", ""),
        ("Gemüsepfanne mit Hähnchen, Zuckerschoten und Brokkoli", ""),
        ("Tarte aux fraises et au basilic thaï de grand-mère", ""),
        ("Курица с сыром пармезан", ""),
        ("番茄鸡肉浓情焗饭【两人份】", ""),
        ("とろっとあたたまる♪ ごぼうとベーコンのクリームスープ", ""),
    ],
)
def test_a_title_in_another_language_is_read_through_the_vocabulary_or_not_at_all(
    title: str, identity: str
) -> None:
    context = analyze(Recipe(title=title, ingredients=("200 g Zucker", "3 Eier", "1 Prise Salz")))
    assert context.dish_identity == identity
    assert context.dish  # the prompt still has a subject
    # Ingredients it cannot read infer nothing and compare as unknown.
    assert context.dietary_tags == () and context.defining_ingredients == ()


def test_an_english_title_over_foreign_ingredients_names_the_dish_and_nothing_else() -> None:
    german = Recipe(
        title="Pumpkin Pie",
        ingredients=("500 g Kürbis", "200 ml Sahne", "3 Eier", "100 g Zucker", "1 Mürbeteig"),
    )
    assert analyze(german).dish_identity == "pie pumpkin"
    assert analyze(german).dietary_tags == ()  # nothing inferred from words it cannot read
    assert analyze(german).animal_foods == ()  # nor read as a conflict


VEGAN = ("dairy-free", "egg-free", "vegan", "vegetarian")


@pytest.mark.parametrize(
    ("title", "tags"),
    [
        ("Vegan Chocolate Cake", VEGAN),
        ("Veganer Kaiserschmarrn mit gebratenen Zimt-Äpfeln", VEGAN),
        ("Healthy Flourless Brownies (nut-free + gluten-free)", ("gluten-free", "nut-free")),
        ("Tiramisu ohne Ei", ("egg-free",)),
        ("Chocolate Cake", ()),
    ],
)  # fmt: skip
def test_the_variant_a_title_states_is_kept_apart_from_the_dish(
    title: str, tags: tuple[str, ...]
) -> None:
    context = analyze(Recipe(title=title))
    assert context.variant_tags == tags
    assert not {"vegan", "gluten", "free", "ohne", "veganer"} & set(context.dish_identity.split())


# ---- the whole context -----------------------------------------------------------------


def test_analysis_reads_course_method_tags_and_main_ingredients() -> None:
    context = analyze(SOUP)
    assert context.dish == "broccoli soup with coconut milk"
    assert context.dish_identity == "broccoli coconut milk soup"
    assert context.course == "soup"  # of the site's labels "Lunch" and "Soup", the dish's
    assert context.cuisine == UNKNOWN  # "California,Easy,Vegan" names no cuisine it knows
    assert context.cooking_method == "simmered"
    assert context.complexity == "simple"
    assert context.main_ingredients == ("coconut milk", "broccoli", "tofu")
    assert "salt" not in context.defining_ingredients
    assert set(context.dietary_tags) == {
        "vegan",
        "vegetarian",
        "dairy-free",
        "egg-free",
        "gluten-free",
    }
    assert context.signature_foods == ()


def test_dietary_tags_are_stated_or_shown_by_the_ingredients() -> None:
    chicken = analyze(
        Recipe(
            title="Honey Garlic Chicken",
            ingredients=("2 chicken breasts", "3 tbsp honey", "2 tbsp butter", "1/4 cup flour"),
        )
    )
    assert chicken.dietary_tags == ()
    cake = analyze(
        Recipe(
            title="Keto Lemon Loaf",
            ingredients=("2 cups almond flour", "4 eggs", "1/2 cup butter", "1 lemon"),
        )
    )
    assert cake.dietary_tags == ("gluten-free", "keto", "vegetarian")
    stated = analyze(Recipe(title="Vegan Brownies"))  # no ingredients: only what it states
    assert stated.dietary_tags == ("dairy-free", "egg-free", "vegan", "vegetarian")
    paleo = analyze(Recipe(title="Paleo Gingerbread"))
    assert {"paleo", "gluten-free", "grain-free", "dairy-free"} <= set(paleo.dietary_tags)


def test_almond_milk_and_eggplant_are_not_dairy_or_eggs() -> None:
    smoothie = analyze(
        Recipe(
            title="Green Smoothie",
            ingredients=("1 cup almond milk", "2 cups spinach", "1 banana", "1 tbsp peanut butter"),
        )
    )
    assert "vegan" in smoothie.dietary_tags
    eggplant = analyze(
        Recipe(title="Roasted Eggplant", ingredients=("2 eggplants", "2 tbsp olive oil", "salt"))
    )
    assert "egg-free" not in eggplant.dietary_tags or "vegan" in eggplant.dietary_tags
    assert "vegan" in eggplant.dietary_tags


def test_signature_foods_change_the_picture() -> None:
    plain = analyze(Recipe(title="Pumpkin Bread", ingredients=("1 can pumpkin puree",)))
    choc = analyze(
        Recipe(title="Pumpkin Bread", ingredients=("1 can pumpkin", "8 oz dark chocolate"))
    )
    assert (plain.signature_foods, choc.signature_foods) == ((), ("chocolate",))
    tomatoes = analyze(Recipe(title="Risotto", ingredients=("1 cup cherry tomatoes",)))
    assert tomatoes.signature_foods == ()


def test_cuisine_comes_from_the_label_then_the_title_then_telling_words() -> None:
    assert analyze(Recipe(title="Chicken Pho", cuisine="Vietnamese")).cuisine == "Vietnamese"
    assert analyze(Recipe(title="Korean Fried Chicken")).cuisine == "Korean"
    assert analyze(Recipe(title="Weeknight Tacos")).cuisine == "Mexican"
    # One telling ingredient is not enough; two are.
    assert analyze(Recipe(title="Bowl", ingredients=("1 cup feta",))).cuisine == UNKNOWN
    bowl = Recipe(title="Bowl", ingredients=("1 cup feta", "tzatziki"))
    assert analyze(bowl).cuisine == "Greek"


def test_the_course_comes_from_the_labels_then_the_dish() -> None:
    assert analyze(Recipe(title="Apple Pie", categories=("Breakfast",))).course == "breakfast"
    assert analyze(Recipe(title="Apple Pie")).course == "dessert"
    assert analyze(Recipe(title="Chicken Pot Pie")).course == "main course"
    assert analyze(Recipe(title="Smoked Salmon Dip")).course == "appetizer"
    assert analyze(Recipe(title="Something")).course == UNKNOWN
    assert label_courses(["Dinner", "Hoofdgerecht", "Dessert"]) == ["main course", "dessert"]


def test_the_title_names_the_method_before_the_instructions_do() -> None:
    recipe = Recipe(title="Grilled Corn", instructions=("Bake it. Then bake again.",))
    assert analyze(recipe).cooking_method == "grilled"
    corn = Recipe(title="Corn", instructions=("Bake it. Then bake again.",))
    assert analyze(corn).cooking_method == "baked"
    assert analyze(Recipe(title="Corn")).cooking_method == UNKNOWN


def test_complexity_counts_ingredients_and_steps() -> None:
    assert analyze(Recipe(title="x")).complexity == UNKNOWN
    assert analyze(Recipe(title="x", ingredients=("a",) * 3, instructions=("mix",))).complexity == (
        "simple"
    )
    assert analyze(Recipe(title="x", ingredients=("a",) * 10)).complexity == "moderate"
    assert analyze(Recipe(title="x", ingredients=("a",) * 20)).complexity == "complex"


def test_a_stored_context_reads_back_and_an_old_one_reads_as_unknown() -> None:
    context = analyze(SOUP)
    assert RecipeContext.from_json(context.to_json()) == context
    old = RecipeContext.from_json({"dish": "soup", "cuisine": "", "main_ingredients": ["x"]})
    assert (old.dish_identity, old.cuisine, old.dietary_tags) == ("", UNKNOWN, ())


def test_the_analysis_is_deterministic() -> None:
    assert analyze(SOUP) == analyze(SOUP)


# ---- the 828 real recipes ----------------------------------------------------------------


def _label_cuisines(raw: dict) -> set[str]:  # type: ignore[type-arg]
    """The canonical cuisines (and regions) a recipe's own cuisine label names."""
    found: set[str] = set()
    for part in labels(raw.get("cuisine")):
        text = part.lower()
        for name, words in lexicon.CUISINE_LABELS.items():
            if any(re.search(r"(?<![\w-])" + re.escape(w) + r"(?![\w-])", text) for w in words):
                found.add(name)
        found |= lexicon.CUISINE_REGIONS.get(text, frozenset())
    return found


@pytest.fixture(scope="module")
def agreement() -> dict[str, tuple[int, int, int]]:
    """(labelled, predicted, agreeing) for course and cuisine, the analyzer given
    only the title, ingredients and instructions (the labels withheld)."""
    counts = {"course": [0, 0, 0], "cuisine": [0, 0, 0]}
    for raw in real_recipes():
        recipe = plain_recipe(raw)
        blind = analyze(Recipe(title=recipe.title, ingredients=recipe.ingredients,
                               instructions=recipe.instructions))  # fmt: skip
        for field, truth in (
            ("course", set(label_courses(labels(raw.get("category"))))),
            ("cuisine", _label_cuisines(raw)),
        ):
            if not truth:
                continue
            counts[field][0] += 1
            predicted = getattr(blind, field)
            if predicted != UNKNOWN:
                counts[field][1] += 1
                counts[field][2] += predicted in truth
    return {field: (a, b, c) for field, (a, b, c) in counts.items()}


def test_every_real_recipe_is_analyzed_without_a_crash_and_unknown_where_unsure() -> None:
    identities = foreign = 0
    for raw in real_recipes():
        context = analyze(plain_recipe(raw))
        assert context == analyze(plain_recipe(raw))
        assert context.course in (*lexicon.COURSES, UNKNOWN)
        assert context.complexity in ("simple", "moderate", "complex", UNKNOWN)
        assert list(context.dietary_tags) == sorted(context.dietary_tags)
        words = tx.WORD.findall(vc.fold(tx.BRACKETS.sub(" ", raw["title"])))
        if context.dish_identity and any(vc.is_foreign_word(w) for w in words):
            # Another language is read only through the vocabulary: every word
            # of the dish is one the analyzer knows in English.
            assert set(context.dish_identity.split()) <= KNOWN_WORDS, raw["title"]
            foreign += 1
        identities += bool(context.dish_identity)
    assert identities >= 650  # most recipes have a dish identity
    assert foreign >= 30  # among them recipes in French, Spanish, German, Dutch...


def test_course_agrees_with_the_sites_labels(agreement) -> None:  # type: ignore[no-untyped-def]
    labelled, predicted, agreeing = agreement["course"]
    print(f"\ncourse: {labelled} labelled, {predicted} predicted, {agreeing} agree")
    assert labelled >= 500
    assert predicted / labelled >= 0.80  # coverage
    assert agreeing / predicted >= 0.75  # precision


def test_cuisine_agrees_with_the_sites_labels(agreement) -> None:  # type: ignore[no-untyped-def]
    labelled, predicted, agreeing = agreement["cuisine"]
    print(f"\ncuisine: {labelled} labelled, {predicted} predicted, {agreeing} agree")
    assert labelled >= 400
    assert predicted / labelled >= 0.60
    assert agreeing / predicted >= 0.70
