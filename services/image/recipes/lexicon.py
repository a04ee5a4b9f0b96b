"""The words the recipe analyzer knows: data only, no logic.

English only, on purpose. A recipe whose words are not here is not guessed at:
its dish identity is unknown, and an unknown dish is never matched to another
(services/image/recipes/similarity.py). Adding a word here can only make the analyzer
recognize more; every list is small enough to read.
"""

from __future__ import annotations

# fmt: off

UNKNOWN = "unknown"

# ---- courses -----------------------------------------------------------------------

COURSES = (
    "appetizer", "bread", "breakfast", "dessert", "drink", "main course", "salad", "sauce",
    "side dish", "soup",
)

# A site's label (lowercased, trimmed) -> the course it names. Labels in other
# languages are here because sites use them; the analyzer reads labels first.
COURSE_LABELS: dict[str, str] = {
    **dict.fromkeys((
        "dessert", "desserts", "cake", "cakes", "cookies", "cookie", "sweets", "pie", "pies",
        "cheesecake", "pudding", "treat", "treats", "desserts & sweets", "cakes & desserts",
        "cookies & bars", "no bake desserts", "sweet pie", "candy", "ice cream", "postres",
        "postre", "dolci", "dolce", "efterrätt", "torte", "nachspeise", "dessert recipes",
        "bolos", "tarts", "brownies", "bars",
    ), "dessert"),
    **dict.fromkeys((
        "main course", "main courses", "main dish", "main dishes", "dinner", "lunch", "entree",
        "entrees", "entrée", "entrées", "mains", "main", "hoofdgerecht", "middag",
        "hauptgericht", "hauptspeise", "hauptspeisen", "huvudrätt", "plat principal",
        "hlavné jedlá", "large plates", "supper", "dinner recipes", "lunch / dinner",
        "lunch/dinner", "weeknight dinner", "main meal", "primeros platos", "secondi",
        "piatti unici",
    ), "main course"),
    **dict.fromkeys(("breakfast", "brunch", "frühstück", "breakfast & brunch", "πρωινο"),
                    "breakfast"),
    **dict.fromkeys(("side dish", "side dishes", "sides", "side", "tilbehør", "contorni",
                     "beilage", "beilagen", "bijgerecht"), "side dish"),
    **dict.fromkeys(("appetizer", "appetizers", "starter", "starters", "snack", "snacks",
                     "dip", "dips", "förrätt", "mellanmål", "σνακ", "voorgerecht",
                     "vorspeise", "entrada", "finger food", "hors d'oeuvres", "tapas",
                     "appetizer or side dishes", "appetizer or main dish"), "appetizer"),
    **dict.fromkeys(("salad", "salads", "salads & dressings", "salads & vegetables",
                     "ensaladas", "salate"), "salad"),
    **dict.fromkeys(("soup", "soups", "stews", "soups & stews", "suppen", "sopas"), "soup"),
    **dict.fromkeys(("bread", "breads", "bakery", "sourdough recipes", "yeast breads",
                     "quick breads", "brot"), "bread"),
    **dict.fromkeys(("drinks", "drink", "beverage", "beverages", "cocktail", "cocktails",
                     "smoothies", "getränke", "bebidas"), "drink"),
    **dict.fromkeys(("sauce", "sauces", "condiment", "condiments", "dressing", "dressings",
                     "salsas", "saucen"), "sauce"),
}

# ---- cuisines ----------------------------------------------------------------------

# Canonical cuisine -> words that name it in a label.
CUISINE_LABELS: dict[str, tuple[str, ...]] = {
    "Italian": ("italian", "italiana", "italienne", "italien", "italiaans", "italiano",
                "italian-inspired", "italian inspired", "cocina italiana"),
    "Mexican": ("mexican", "mexicana", "mexicano", "tex-mex", "tex mex", "mexican-inspired",
                "mexican inspired", "mexican cuisine", "mexican-american"),
    "French": ("french", "française", "francaise", "französisch", "frans", "francese",
               "french-inspired", "provençale"),
    "Spanish": ("spanish", "española", "espanola", "español", "cocina española", "spanisch",
                "spanish-inspired"),
    "Portuguese": ("portuguese", "azorean", "português", "portuguesa"),
    "Greek": ("greek", "greek-inspired", "griechisch", "grieks"),
    "Middle Eastern": ("middle eastern", "lebanese", "israeli", "persian", "turkish", "turska",
                       "israelisch / arabisch", "libanon", "arabic", "yemenite"),
    "Indian": ("indian", "indisk", "indisch", "indienne", "pakistani"),
    "Thai": ("thai", "thai-inspired", "thaise keuken", "thailändisch"),
    "Vietnamese": ("vietnamese", "vietnamesisch"),
    "Chinese": ("chinese", "chinese keuken", "chinese-american", "chinesisch", "hokkien",
                "cantonese", "sichuan", "szechuan"),
    "Japanese": ("japanese", "japans", "japanisch", "japonaise"),
    "Korean": ("korean", "koreanisch"),
    "Moroccan": ("moroccan", "north african"),
    "Mediterranean": ("mediterranean", "méditerranéenne"),
    "American": ("american", "southern", "cajun", "creole", "amerikansk", "amerikanisch",
                 "american contemporary", "american-inspired", "new orleans", "united states",
                 "north american", "tex-mex american", "cajun recipe", "soul food", "hawaiian"),
    "British": ("british", "english", "irish", "scottish", "inglesa", "welsh"),
    "German": ("german", "austrian", "deutsch", "österreich", "österreichische spezialitäten",
               "swiss", "bavarian"),
    "Caribbean": ("caribbean", "jamaican", "cuban", "puerto rican"),
    "Latin American": ("brazilian", "brasileira", "peruvian", "argentinian", "argentina",
                       "colombian", "latin american", "venezuelan"),
    "Filipino": ("filipino", "filipino recipe"),
    "Indonesian": ("indonesian", "malaysian", "singaporean"),
    "Scandinavian": ("scandinavian", "swedish", "norwegian", "danish", "norge", "nordic"),
    "Eastern European": ("polish", "polska", "russian", "ukrainian", "hungarian", "magyar",
                         "czech", "slovenská", "bosanska", "eastern european or russian",
                         "eastern european"),
    "Dutch": ("dutch", "nederlands", "belgisch", "belgian"),
    "African": ("african", "south african", "ethiopian", "west african", "nigerian"),
    "Jewish": ("jewish",),
}

# Labels that name a broad region: a prediction inside the region agrees with it.
CUISINE_REGIONS: dict[str, frozenset[str]] = {
    "asian": frozenset({"Chinese", "Japanese", "Korean", "Thai", "Vietnamese", "Indonesian",
                        "Filipino", "Indian"}),
    "asian-inspired": frozenset({"Chinese", "Japanese", "Korean", "Thai", "Vietnamese",
                                 "Indonesian", "Filipino"}),
    "east asian": frozenset({"Chinese", "Japanese", "Korean"}),
    "southeast asian": frozenset({"Thai", "Vietnamese", "Indonesian", "Filipino"}),
    "asia": frozenset({"Chinese", "Japanese", "Korean", "Thai", "Vietnamese", "Indonesian",
                       "Filipino", "Indian"}),
    "european": frozenset({"Italian", "French", "Spanish", "Portuguese", "Greek", "British",
                           "German", "Scandinavian", "Eastern European", "Dutch",
                           "Mediterranean"}),
    "europe": frozenset({"Italian", "French", "Spanish", "Portuguese", "Greek", "British",
                         "German", "Scandinavian", "Eastern European", "Dutch",
                         "Mediterranean"}),
    "europa": frozenset({"Italian", "French", "Spanish", "Portuguese", "Greek", "British",
                         "German", "Scandinavian", "Eastern European", "Dutch",
                         "Mediterranean"}),
    "europese": frozenset({"Italian", "French", "Spanish", "Portuguese", "Greek", "British",
                           "German", "Scandinavian", "Eastern European", "Dutch",
                           "Mediterranean"}),
    "mediterranean": frozenset({"Mediterranean", "Greek", "Italian", "Spanish",
                                "Middle Eastern", "Moroccan"}),
    "latin american": frozenset({"Latin American", "Mexican", "Caribbean"}),
    "north american": frozenset({"American", "Mexican"}),
}

# Words in a title or the ingredients that point at a cuisine. A title word
# counts three times an ingredient word; ingredients alone need two hits.
CUISINE_HINTS: dict[str, tuple[str, ...]] = {
    "Italian": (
        "pasta", "spaghetti", "lasagna", "lasagne", "risotto", "pizza", "gnocchi", "pesto",
        "parmesan", "parmigiano", "mozzarella", "ricotta", "prosciutto", "bruschetta",
        "carbonara", "bolognese", "tiramisu", "focaccia", "penne", "fettuccine", "ravioli",
        "tortellini", "orzo", "pastina", "cacciatore", "piccata", "marinara", "panna cotta",
        "pizzelle", "pizzelles", "cacio e pepe", "puttanesca", "italian", "tuscan", "polenta",
        "rigatoni", "linguine", "mascarpone", "pecorino", "arborio", "manicotti", "gelato",
        "calzone", "minestrone", "biscotti", "alfredo", "vesuvio", "caprese", "pancetta",
        "fusilli", "casarecce", "tagliatelle", "sicilian", "ragu", "frittata", "limoncello",
    ),
    "Mexican": (
        "taco", "tacos", "tortilla", "tortillas", "enchilada", "enchiladas", "quesadilla",
        "quesadillas", "salsa", "guacamole", "jalapeno", "jalapeño", "jalapenos", "chipotle",
        "burrito", "burritos", "tamales", "pozole", "mole", "cotija", "queso", "fajitas",
        "fajita", "taquitos", "taquito", "barbacoa", "al pastor", "churros", "masa harina",
        "pico de gallo", "salsa verde", "carnitas", "elote", "poblano", "tomatillo",
        "nachos", "chimichanga", "mexican", "adobo", "oaxaca", "tex-mex", "gordita",
        "street corn", "horchata", "margarita", "margaritas", "flan",
    ),
    "Indian": (
        "curry", "masala", "tikka", "tandoori", "dal", "dhal", "dahl", "paneer", "naan",
        "biryani", "garam masala", "turmeric", "ghee", "chana", "samosa", "korma", "vindaloo",
        "butter chicken", "kashmiri", "masoor", "chapati", "raita", "chutney", "pakora",
        "indian", "gol gappay", "cardamom",
    ),
    "Japanese": (
        "miso", "sushi", "teriyaki", "ramen", "dashi", "mirin", "tempura", "udon", "soba",
        "katsu", "matcha", "nori", "onigiri", "sukiyaki", "okonomiyaki", "japanese", "sake",
        "yaki", "bento", "edamame", "wasabi", "panko", "furikake", "nabe",
    ),
    "Korean": ("kimchi", "gochujang", "bulgogi", "bibimbap", "gochugaru", "japchae", "korean",
               "kalbi", "galbi", "chigae", "jjigae", "dubu", "tteok"),
    "Thai": ("pad thai", "lemongrass", "thai basil", "green curry", "red curry", "tom yum",
             "thai", "fish sauce", "sriracha", "nam jim", "satay", "galangal", "kaffir"),
    "Vietnamese": ("pho", "banh mi", "rice paper", "nuoc cham", "vietnamese", "vermicelli"),
    "Chinese": (
        "stir-fry", "stir fry", "wok", "hoisin", "bok choy", "dumplings", "wontons",
        "kung pao", "szechuan", "sichuan", "chow mein", "lo mein", "five-spice", "five spice",
        "char siu", "dan dan", "shaoxing", "hot pot", "chinese", "fried rice", "orange chicken",
        "sesame chicken", "oyster sauce", "egg roll", "spring roll", "bao", "mapo",
        "soy sauce", "sesame oil",
    ),
    "Greek": ("feta", "tzatziki", "gyro", "gyros", "souvlaki", "spanakopita", "moussaka",
              "greek", "kalamata", "gemista", "baklava", "orzo", "kabobs", "oregano"),
    "Spanish": ("paella", "chorizo", "tapas", "gazpacho", "manchego", "patatas bravas",
                "spanish", "sangria", "salmorejo", "romesco", "churros", "saffron"),
    "Middle Eastern": (
        "hummus", "tahini", "falafel", "za'atar", "zaatar", "shakshuka", "tabbouleh",
        "sumac", "pita", "pitas", "shawarma", "baba ganoush", "fattoush", "labneh",
        "israeli couscous", "kubaneh", "aleppo", "pomegranate molasses", "harissa", "dukkah",
    ),
    "French": ("ratatouille", "quiche", "crepe", "crepes", "crêpe", "crêpes", "gratin",
               "bourguignon", "souffle", "soufflé", "crème brûlée", "creme brulee", "eclair",
               "éclair", "croissant", "croissants", "bûche", "buche", "madeleines", "brioche",
               "au gratin", "french", "galette", "vol-au-vent", "tartine", "niçoise",
               "provençal", "blanquette", "pissaladière", "cassoulet", "dijon", "gruyere",
               "gruyère"),
    "Moroccan": ("tagine", "couscous", "ras el hanout", "preserved lemon", "moroccan"),
    "American": (
        "mac and cheese", "mac & cheese", "macaroni and cheese", "cornbread", "brownie",
        "brownies", "chocolate chip cookies", "pot pie", "sloppy joe", "burger", "burgers",
        "biscuits and gravy", "pancakes", "meatloaf", "coleslaw", "pecan pie", "pumpkin pie",
        "apple pie", "banana bread", "buffalo", "ranch", "bbq", "barbecue", "s'mores",
        "casserole", "cobbler", "clam chowder", "hot dog", "grilled cheese", "sliders",
        "cheesecake", "fried chicken", "chicken fried", "pulled pork", "brisket", "burnt ends",
        "ribs", "mashed potatoes", "green bean casserole", "sweet potato pie", "cinnamon rolls",
        "banana pudding", "whoopie", "monkey bread", "chili", "cajun", "creole", "jambalaya",
        "gumbo", "shoofly", "mississippi", "texas", "southern", "southwest", "tri tip",
        "smash burgers", "patty melt", "sheet cake", "dump cake", "pound cake", "red velvet",
        "funfetti", "oreo", "oreos", "rice krispies", "peanut butter", "marshmallow",
        "maple syrup", "biscuits", "gravy", "graham cracker", "graham crackers", "pretzel",
        "pretzels", "kolaches", "hawaiian", "alabama", "amish", "salisbury", "cool whip",
        "velveeta", "ritz", "bisquick", "cream cheese frosting", "buttermilk", "pecans",
        "hash browns", "turkey", "thanksgiving", "cranberry", "apple cider", "cheddar",
        "jack cheese", "monterey jack", "french fries", "popcorn", "caesar", "cowboy",
        "blueberry muffins", "sugar cookies", "chocolate cake", "coffee cake",
    ),
    "British": ("shortbread", "scones", "posset", "trifle", "fish and chips", "shepherd's pie",
                "cottage pie", "sticky toffee", "hot cross buns", "custard", "jaffa", "crumble",
                "irish", "jameson", "bangers", "yorkshire", "marmalade", "caster sugar",
                "double cream", "self-raising", "golden syrup"),
    "German": ("sauerbraten", "schnitzel", "strudel", "spaetzle", "kaiserschmarrn", "bratwurst",
               "sauerkraut", "german", "pretzel", "black forest", "goulash", "gulasch",
               "stollen", "lebkuchen"),
    "Eastern European": ("pierogi", "pierogies", "borscht", "kielbasa", "paprika", "polish",
                         "hungarian", "stroganoff", "goulash", "gombóc", "blini", "babka",
                         "ruskie", "farmer cheese"),
    "Caribbean": ("jerk", "plantain", "plantains", "coquito", "ropa vieja", "mofongo",
                  "cuban", "jamaican", "pina colada", "piña colada", "rum"),
    "Filipino": ("adobo", "lumpia", "pancit", "sinigang", "bicol express", "banana cue",
                 "ube", "filipino", "calamansi"),
    "Portuguese": ("chouriço", "chourico", "pastel de nata", "caçoila", "linguica", "piri piri",
                   "portuguese"),
    "Latin American": ("chimichurri", "empanada", "empanadas", "arepa", "arepas", "caipirinha",
                       "dulce de leche", "ceviche", "latin"),
    "Scandinavian": ("lingonberry", "lingon", "cardamom buns", "gravlax", "swedish",
                     "meatballs and gravy", "aquavit", "scandinavian"),
}

# A cuisine a word in the title implies even when it names another cuisine's
# dish ("Korean Fried Chicken" is Korean, not American): titles are read for
# these first.
CUISINE_TITLE_WORDS: dict[str, tuple[str, ...]] = {
    "Italian": ("italian", "tuscan", "sicilian", "milanese", "roman"),
    "Mexican": ("mexican", "tex-mex"),
    "Indian": ("indian",),
    "Japanese": ("japanese",),
    "Korean": ("korean",),
    "Thai": ("thai",),
    "Vietnamese": ("vietnamese",),
    "Chinese": ("chinese", "szechuan", "sichuan", "cantonese"),
    "Greek": ("greek",),
    "Spanish": ("spanish",),
    "Middle Eastern": ("lebanese", "israeli", "persian", "turkish", "yemenite"),
    "French": ("french",),
    "Moroccan": ("moroccan",),
    "American": ("american", "southern", "cajun", "texas", "southwest", "hawaiian", "amish",
                 "alabama", "mississippi", "new england", "philly"),
    "British": ("british", "english", "irish", "scottish"),
    "German": ("german", "bavarian", "austrian"),
    "Eastern European": ("polish", "hungarian", "russian", "ukrainian"),
    "Portuguese": ("portuguese",),
    "Caribbean": ("cuban", "jamaican", "caribbean"),
    "Filipino": ("filipino",),
    "Latin American": ("brazilian", "peruvian", "argentinian", "latin"),
    "Scandinavian": ("swedish", "norwegian", "danish", "scandinavian"),
}

# ---- cooking methods ---------------------------------------------------------------

# Method -> words in the title or instructions. The title decides when it names
# one; otherwise the most mentioned, ties going to the earlier entry.
METHODS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("slow-cooked", ("slow cooker", "slow-cooker", "crock pot", "crockpot", "slow cook",
                     "slow-cooked", "slow cooked")),
    ("pressure-cooked", ("instant pot", "pressure cooker", "pressure-cooker", "pressure cook")),
    ("air-fried", ("air fryer", "air-fryer", "air fry", "air fried", "air-fried")),
    ("deep-fried", ("deep fry", "deep-fry", "deep fried", "deep-fried")),
    ("stir-fried", ("stir-fry", "stir fry", "stir-fried", "stir fried", "wok")),
    ("grilled", ("grill", "grilled", "grilling", "barbecue", "bbq", "char", "charred")),
    ("smoked", ("smoke", "smoked", "smoker")),
    ("roasted", ("roast", "roasted", "roasting")),
    ("baked", ("bake", "baked", "baking", "oven")),
    ("braised", ("braise", "braised", "braising")),
    ("pan-fried", ("fry", "fried", "frying", "saute", "sauté", "sauteed", "sautéed", "sear",
                   "seared", "pan-seared")),
    ("steamed", ("steam", "steamed", "steaming")),
    ("simmered", ("simmer", "simmered", "simmering", "boil", "boiled", "boiling")),
    ("blended", ("blend", "blender", "puree", "purée", "food processor")),
    ("chilled", ("chill", "refrigerate", "freeze", "no-bake", "no bake", "no churn",
                 "no-churn")),
)

# ---- dish names --------------------------------------------------------------------

# What a dish is, by the word that heads its name, with the course it usually
# is. A title without one of these has no dish identity (it is not matched).
# Multi-word heads are matched before single words.
DISH_HEADS: dict[str, str] = {
    # desserts
    **dict.fromkeys((
        "cake", "cupcake", "cheesecake", "cookie", "brownie", "blondie", "pie", "tart",
        "tartlet", "galette", "cobbler", "crumble", "crisp", "buckle", "pudding",
        "ice cream", "gelato", "sorbet", "sherbet", "mousse", "fudge", "truffle", "brittle",
        "caramel", "toffee", "candy", "bar", "square", "pavlova", "meringue", "tiramisu",
        "panna cotta", "custard", "posset", "flan", "crème brûlée", "creme brulee", "trifle",
        "cannoli", "eclair", "éclair", "churro", "donut", "doughnut", "pizzelle", "macaron",
        "macaroon", "shortbread", "bundt", "strudel", "turnover", "baklava", "cheesecake bar",
        "bûche de noël", "buche de noel", "dump cake", "sheet cake",
        "pound cake", "mug cake", "shortcake", "frosting", "glaze", "icing", "ganache",
        "whoopie pie", "s'more", "energy bite", "energy ball", "blossom",
        "sugar plum", "chess pie", "fondant", "lava cake", "cake pop", "snickerdoodle",
        "biscotti", "crepe", "crêpe", "roll cake",
        "sandwich cookie", "ice cream sandwich", "chia pudding", "date",
        "caramel apple",
    ), "dessert"),
    # breads and bakes
    **dict.fromkeys((
        "bread", "loaf", "roll", "bun", "biscuit", "croissant", "bagel",
        "focaccia", "cornbread", "challah", "brioche", "naan", "flatbread", "pita",
        "tortilla", "pretzel", "dinner roll", "kolache",
        "crust", "pie crust", "dough", "starter", "sourdough",
    ), "bread"),
    # breakfast
    **dict.fromkeys((
        "pancake", "waffle", "french toast", "omelet", "frittata", "oatmeal", "porridge",
        "granola", "quiche", "hash", "breakfast sandwich", "breakfast taco", "crepini",
        "yogurt bowl", "overnight oat", "oat", "egg", "shakshuka", "hash brown", "muffin",
        "scone", "sticky bun", "cinnamon roll", "cinnamon bun", "breakfast casserole",
    ), "breakfast"),
    # soups
    **dict.fromkeys((
        "soup", "stew", "chowder", "bisque", "broth", "chili", "pho", "ramen", "gazpacho",
        "gumbo", "hot pot", "chigae", "jjigae", "minestrone", "borscht", "goulash",
        "salmorejo", "dal", "dahl", "dhal",
    ), "soup"),
    # salads
    **dict.fromkeys(("salad", "slaw", "coleslaw", "fattoush", "tabbouleh"), "salad"),
    # drinks
    **dict.fromkeys((
        "smoothie", "lemonade", "latte", "tea", "punch", "milkshake", "shake", "cocktail",
        "margarita", "sangria", "coquito", "hot chocolate", "cocoa", "hot cocoa", "juice",
        "cold brew", "coffee", "mojito", "fizz", "ale", "lager", "beer",
        "caipirinha", "spritz", "martini", "colada", "eggnog", "horchata",
    ), "drink"),
    # sauces, spreads and preserves
    **dict.fromkeys((
        "sauce", "dressing", "vinaigrette", "marinade", "gravy", "pesto", "salsa", "relish",
        "chutney", "jam", "jelly", "marmalade", "preserve", "curd", "butter", "mayo",
        "mayonnaise", "aioli", "seasoning", "rub", "spice blend", "syrup", "applesauce",
        "pickle", "filling", "compote", "spread", "oil",
    ), "sauce"),
    # appetizers and snacks
    **dict.fromkeys((
        "dip", "hummus", "guacamole", "bruschetta", "crostini", "fritter", "spring roll",
        "egg roll", "popper", "nacho", "chip", "cracker", "popcorn", "skewer", "slider",
        "wing", "deviled egg", "board", "platter", "cheese log", "cheese ball",
        "samosa", "falafel", "onigiri", "toast", "tostada", "pinwheel", "fondue",
        "chickpea", "taquito",
    ), "appetizer"),
    # sides
    **dict.fromkeys((
        "potato", "mashed potato", "fries", "french fry", "rice", "fried rice", "quinoa",
        "couscous", "polenta", "sprout", "brussels sprout", "asparagus", "broccoli",
        "cauliflower", "carrot", "green bean", "bean", "corn", "squash", "zucchini",
        "eggplant", "mushroom", "stuffing", "pickled vegetable", "veggie", "vegetable",
        "sweet potato", "pear", "tomato", "pea", "onion ring",
    ), "side dish"),
    # mains
    **dict.fromkeys((
        "chicken", "beef", "pork", "lamb", "turkey", "veal", "duck", "ham", "steak",
        "rib", "short rib", "chop", "pork chop", "roast", "meatball", "meatloaf", "sausage",
        "bacon", "brisket", "burnt end", "tenderloin", "cutlet", "schnitzel", "drumstick",
        "thigh", "breast", "leg", "tender", "nugget", "salmon", "tuna", "shrimp", "prawn",
        "fish", "cod", "halibut", "swordfish", "sea bass", "trout", "tilapia", "crab",
        "lobster", "scallop", "mussel", "clam", "tofu", "tempeh", "seitan", "lentil",
        "pasta", "spaghetti", "lasagna", "noodle", "udon", "macaroni", "mac and cheese",
        "risotto", "gnocchi", "ravioli", "tortellini", "manicotti", "orzo", "pastina",
        "penne", "carbonara", "bolognese", "ragu", "alfredo", "pizza", "calzone", "burger",
        "smash burger", "sandwich", "wrap", "taco", "burrito", "enchilada", "quesadilla",
        "fajita", "gordita", "bowl", "burrito bowl", "poke bowl", "casserole", "bake",
        "curry", "tikka masala", "stir-fry", "stir fry", "kebab", "gyro", "pierogi",
        "dumpling", "pot pie", "meat pie", "shepherd's pie", "cottage pie", "stroganoff",
        "bourguignon", "cacciatore", "piccata", "vesuvio", "sukiyaki", "okonomiyaki",
        "jambalaya", "paella", "tagine", "ratatouille", "chili mac", "hot dog",
        "grilled cheese", "patty melt", "sloppy joe", "grinder", "pita pocket",
        "sauerbraten", "barbacoa", "carnitas", "pulled pork", "ropa vieja", "bicol express",
        "char siu", "banh mi", "vol-au-vent", "blanquette", "rissole", "fish stick",
        "fish and chips", "scampi", "crab cake", "fish cake", "patty", "pasty", "meat loaf",
        "mac", "chickpeas cacio e pepe", "cacio e pepe", "puttanesca", "lo mein",
        "chow mein", "pad thai", "fried chicken", "ribeye", "sirloin",
        "tri tip", "hanger steak", "pork belly", "pork steak", "short ribs", "kalbi",
    ), "main course"),
}

# Heads too vague to name a dish alone: "Bowl" or "Bake" by itself is not
# matched; "Burrito Bowl" or "Cauliflower Bake" is.
GENERIC_HEADS = frozenset({
    "bowl", "bar", "square", "bake", "roast", "dish", "platter", "board", "bite", "filling",
    "spread", "oil", "butter", "seasoning", "rub", "vegetable", "veggie", "sandwich", "wrap",
    "cake", "pie", "salad", "soup", "bread", "roll", "sauce", "toast", "chip", "bean",
})

# Dish words whose course depends on what else the title says; the head's
# course above is only the default.
SAVORY_PIE_WORDS = frozenset({
    "chicken", "beef", "pork", "meat", "turkey", "shepherd", "cottage", "pot", "steak",
    "mushroom", "onion", "cheese", "spinach", "salmon", "fish", "lamb",
})

# Foods that, at the head of a title, can also be eaten on their own ("Hummus",
# "Ratatouille"): they make a recognized dish by themselves.
STANDALONE_DISHES = frozenset({
    "hummus", "falafel", "guacamole", "ratatouille", "gazpacho", "shakshuka", "tiramisu",
    "baklava", "paella", "polenta", "pastina", "churro", "flan", "okonomiyaki", "sukiyaki",
    "jambalaya", "coquito", "sangria", "margarita", "lemonade", "applesauce", "coleslaw",
})

# ---- title noise -------------------------------------------------------------------

# Words that praise or sell a recipe, or say how it is written, not what is on
# the plate.
NOISE_WORDS = frozenset({
    "my", "our", "your", "mom", "moms", "grandma", "grandmas", "the", "best", "ever",
    "favorite", "favourite", "favorites", "easy", "easiest", "quick", "quickest", "simple",
    "super", "healthy", "healthier", "homemade", "home-made", "perfect", "ultimate",
    "classic", "amazing", "delicious", "famous", "recipe", "recipes", "how", "make",
    "making", "made", "awesome", "actually", "authentic", "traditional", "basic",
    "copycat", "fabulous", "ridiculously", "tastiest", "tasty", "brilliant", "bloomin",
    "special", "good", "old", "fashioned", "old-fashioned", "scratch", "from", "style",
    "inspired", "restaurant", "fast", "speedy", "weeknight", "lazy", "foolproof",
    "irresistible", "incredible", "yummy", "best-ever", "obsession-worthy", "worthy",
    "obsession", "perfectly", "really", "very", "seriously", "insanely", "crazy", "guide",
    "beginner", "beginners", "version", "ways", "way", "idea", "ideas", "tips", "video",
    "step", "steps", "by", "sustainable", "simplified", "almost", "budget", "cheap",
    "cheaper", "dollar", "leftover", "proper", "real", "true",
    "wonderful", "world", "worlds", "new", "light", "lightened", "skinny",
    "kid-friendly", "family", "meal", "prep", "meal-prep", "freezer-friendly", "one",
})

# Appliances and vessels that change how a dish is cooked, not how it looks.
APPLIANCE_PHRASES = (
    "slow cooker", "slow-cooker", "crock pot", "crock-pot", "crockpot", "instant pot",
    "instant-pot", "pressure cooker", "pressure-cooker", "thermomix", "ninja creami",
    "air fryer", "air-fryer", "multicooker", "dutch oven", "one pot", "one-pot", "one pan",
    "one-pan", "one bowl", "one-bowl", "stovetop", "stove top", "microwave", "sous vide",
    "precision cooker", "oven or air fryer", "air fryer and oven instructions", "thermomix",
)

# Words that are not English: one in a title means the title is in another
# language (and the dish identity unknown). Chosen so that none is an English
# word that titles use ("de" and "la" are left out: "crème de la crème").
FOREIGN_WORDS = frozenset({
    "mit", "und", "der", "die", "das", "im", "vom", "zum", "zur", "für", "auf", "ohne",
    "met", "van", "het", "een", "voor", "uit", "zo", "maken",
    "au", "aux", "du", "des", "et", "avec", "sans", "pour", "recette", "facile", "maison",
    "y", "del", "los", "las", "receta", "sin", "para", "una", "un", "el",
    "alla", "alle", "di", "allo", "della", "dello", "ai", "agli", "e", "il", "ed",
    "med", "och", "og", "på", "för", "af", "til", "grundrecept",
    "com", "em", "ao", "dos", "receita", "sem",
    "és", "sa", "na", "ze", "se", "z", "ahogy", "egyszerű", "recept", "podle", "fotorecept",
    "i", "à", "le", "les", "vitaminé", "zoervleisj", "ganz", "einfach",
})

# ---- dietary tags ------------------------------------------------------------------

# Phrases in a title or a label that state a dietary tag.
DIET_PHRASES: dict[str, str] = {
    "vegan": "vegan", "plant-based": "vegan", "plant based": "vegan",
    "vegetarian": "vegetarian", "veggie": "vegetarian",
    "gluten-free": "gluten-free", "gluten free": "gluten-free", "sem glúten": "gluten-free",
    "sans gluten": "gluten-free", "glutenfrei": "gluten-free", "flourless": "gluten-free",
    "dairy-free": "dairy-free", "dairy free": "dairy-free", "non-dairy": "dairy-free",
    "keto": "keto", "low carb": "low-carb", "low-carb": "low-carb", "paleo": "paleo",
    "whole30": "whole30", "grain-free": "grain-free", "grain free": "grain-free",
    "nut-free": "nut-free", "nut free": "nut-free", "egg-free": "egg-free",
    "eggless": "egg-free", "no eggs": "egg-free", "sugar-free": "sugar-free",
    "sugar free": "sugar-free", "refined sugar free": "sugar-free",
    "high protein": "high-protein", "high-protein": "high-protein", "protein": "high-protein",
    "low fodmap": "low-fodmap", "low-fodmap": "low-fodmap", "soy-free": "soy-free",
    "carnivore": "carnivore", "low sodium": "low-sodium", "low-sodium": "low-sodium",
    # The same promises in the languages of the dish vocabulary (dishes.json).
    "vegane": "vegan", "veganer": "vegan", "veganes": "vegan", "veganen": "vegan",
    "vegano": "vegan", "vegana": "vegan", "veganos": "vegan", "veganas": "vegan",
    "végétalien": "vegan", "végétalienne": "vegan", "végane": "vegan", "veganistische": "vegan",
    "vegetarisch": "vegetarian", "vegetarische": "vegetarian", "vegetarischer": "vegetarian",
    "vegetariano": "vegetarian", "vegetariana": "vegetarian", "végétarien": "vegetarian",
    "végétarienne": "vegetarian", "vegetáriánus": "vegetarian",
    "sin gluten": "gluten-free", "senza glutine": "gluten-free", "glutenvrij": "gluten-free",
    "gluténmentes": "gluten-free", "sem gluten": "gluten-free",
    "ohne ei": "egg-free", "sin huevo": "egg-free", "sem ovo": "egg-free", "sans oeufs": "egg-free",
    "sans œufs": "egg-free", "senza uova": "egg-free", "zonder ei": "egg-free",
    "tojásmentes": "egg-free", "laktosefrei": "dairy-free", "sin lactosa": "dairy-free",
    "senza lattosio": "dairy-free", "lactosevrij": "dairy-free", "sans lactose": "dairy-free",
    "sem lactose": "dairy-free", "laktózmentes": "dairy-free",
}

# A stated tag implies these as well.
DIET_IMPLIES: dict[str, tuple[str, ...]] = {
    "vegan": ("vegetarian", "dairy-free", "egg-free"),
    "paleo": ("gluten-free", "grain-free", "dairy-free"),
    "whole30": ("gluten-free", "grain-free", "dairy-free", "sugar-free"),
    "grain-free": ("gluten-free",),
}

# Ingredient words for inferring tags. Each match is on whole words of the
# ingredient's name; the exceptions are checked first ("almond milk" is not milk).
MEAT_WORDS = frozenset({
    "chicken", "beef", "pork", "bacon", "ham", "sausage", "sausages", "turkey", "lamb",
    "veal", "prosciutto", "pancetta", "chorizo", "chouriço", "chourico", "salami",
    "pepperoni", "steak", "steaks", "brisket", "mince", "duck", "venison", "elk", "goat",
    "meat", "meatballs", "ribs", "rib", "chuck", "sirloin", "tenderloin", "ribeye", "thighs",
    "thigh", "breast", "breasts", "wings", "drumsticks", "andouille", "kielbasa", "hot dog",
    "hot dogs", "gelatin", "gelatine", "lard", "anchovy", "anchovies", "fish", "salmon",
    "tuna", "cod", "halibut", "shrimp", "prawn", "prawns", "crab", "lobster", "clam",
    "clams", "mussel", "mussels", "scallop", "scallops", "oyster", "oysters", "swordfish",
    "bass", "tilapia", "trout", "sardine", "sardines", "mackerel", "squid", "octopus",
    "bouillon", "broth", "stock", "suet", "pork belly", "burger", "patties", "pastrami",
    "corned beef", "roast beef", "rotisserie", "shoulder", "loin", "butt", "flank",
    "tri-tip", "short ribs", "ground beef", "ground turkey", "ground pork", "ground chicken",
    "bone", "chops", "cutlets", "tenders", "filet", "fillet", "fillets", "worcestershire",
    "fish sauce", "oyster sauce", "lardons", "chicharron", "guanciale", "bresaola",
})
MEAT_EXCEPTIONS = frozenset({
    "vegetable broth", "vegetable stock", "veggie broth", "veggie stock", "mushroom broth",
    "vegan", "plant-based", "meatless", "beyond meat", "impossible", "vegetarian",
    "vegetable bouillon", "not-chicken", "no-chicken", "chicken-style", "mushroom stock",
    "dashi kombu", "vegan fish sauce", "vegan worcestershire", "coconut meat", "jackfruit",
    "chickpea", "chickpeas", "garbanzo", "hen of the woods", "chicken of the woods",
    "bone-in" , "fillo", "tofu", "seitan", "tempeh",
})
DAIRY_WORDS = frozenset({
    "milk", "butter", "cheese", "cream", "yogurt", "yoghurt", "buttermilk", "ghee",
    "parmesan", "parmigiano", "mozzarella", "cheddar", "ricotta", "feta", "gruyere",
    "gruyère", "mascarpone", "whey", "casein", "half-and-half", "half and half", "kefir",
    "pecorino", "romano", "provolone", "brie", "camembert", "gouda", "havarti", "fontina",
    "asiago", "cotija", "queso", "paneer", "quark", "labneh", "custard", "ice cream",
    "creme fraiche", "crème fraîche", "sour cream", "cream cheese", "condensed milk",
    "evaporated milk", "dulce de leche", "cool whip", "whipped topping", "velveeta",
    "colby", "monterey", "jack", "swiss", "emmental", "halloumi", "burrata", "stracciatella",
    "curds", "margarine", "nutella", "caramel", "chocolate chips", "milk chocolate",
    "white chocolate", "pudding mix", "baileys", "irish cream", "eggnog", "pizzelle",
})
DAIRY_EXCEPTIONS = frozenset({
    "almond milk", "coconut milk", "oat milk", "soy milk", "cashew milk", "rice milk",
    "hemp milk", "plant milk", "plant-based milk", "non-dairy", "dairy-free", "dairy free",
    "vegan", "coconut cream", "cashew cream", "peanut butter", "almond butter",
    "cashew butter", "sunflower butter", "sunflower seed butter", "seed butter",
    "nut butter", "apple butter", "cocoa butter", "cacao butter", "shea butter",
    "butternut", "butter beans", "butter bean", "butterhead", "butter lettuce",
    "coconut yogurt", "soy yogurt", "almond yogurt", "oat cream", "soy cream",
    "nutritional yeast", "cream of tartar", "coconut butter", "ice cream salt",
    "cashew cheese", "cashew ricotta", "tofu", "biscoff", "pumpkin butter",
    "cocoa", "cream of coconut", "creamed coconut", "vegan butter", "vegan cheese",
    "plant butter", "dairy-free chocolate", "vegan chocolate", "milk thistle",
})
EGG_WORDS = frozenset({
    "egg", "eggs", "yolk", "yolks", "egg white", "egg whites", "mayonnaise", "mayo",
    "meringue", "aioli", "custard", "eggnog", "hollandaise", "brioche", "challah",
})
EGG_EXCEPTIONS = frozenset({
    "eggplant", "eggplants", "egg-free", "eggless", "vegan mayo", "vegan mayonnaise",
    "flax egg", "flax eggs", "chia egg", "egg replacer", "just egg", "aquafaba",
})
GLUTEN_WORDS = frozenset({
    "flour", "wheat", "bread", "breadcrumbs", "breadcrumb", "bread crumbs", "panko", "pasta",
    "spaghetti", "noodles", "noodle", "tortilla", "tortillas", "pie crust", "pie shell",
    "pastry", "puff pastry", "phyllo", "filo", "fillo", "barley", "rye", "couscous", "orzo",
    "bulgur", "farro", "semolina", "soy sauce", "beer", "ale", "crackers", "cracker",
    "cookies", "graham", "pretzels", "pretzel", "croutons", "cake mix", "seitan", "malt",
    "einkorn", "spelt", "penne", "macaroni", "lasagna", "lasagne", "fettuccine", "linguine",
    "rigatoni", "fusilli", "tortellini", "ravioli", "gnocchi", "udon", "ramen", "buns",
    "bun", "rolls", "baguette", "pita", "naan", "biscuits", "oreo", "oreos", "croissant",
    "dough", "wonton", "dumpling", "brownie mix", "bisquick", "cereal", "rice krispies",
    "shells", "elbow", "casarecce", "pastina", "tagliatelle", "vermicelli", "sourdough",
    "focaccia", "crumbs", "stuffing", "croissants", "challah", "brioche", "bagel", "bagels",
    "wafers", "biscoff", "shortbread", "cake", "muffin", "pizza crust", "pizza dough",
    "hoisin", "teriyaki", "breadsticks", "matzo", "kamut", "triticale",
})
GLUTEN_EXCEPTIONS = frozenset({
    "gluten-free", "gluten free", "almond flour", "coconut flour", "rice flour",
    "tapioca flour", "cassava flour", "chickpea flour", "corn flour", "cornflour",
    "oat flour", "buckwheat flour", "potato flour", "sorghum flour", "arrowroot flour",
    "millet flour", "quinoa flour", "teff flour", "banana flour", "tigernut flour",
    "corn tortilla", "corn tortillas", "rice noodles", "rice noodle", "glass noodles",
    "rice paper", "tamari", "coconut aminos", "gluten-free flour", "fioreglut",
    "cauliflower rice", "rice vermicelli", "buckwheat", "zucchini noodles", "shirataki",
    "sweet potato noodles", "bean thread", "lettuce wrap", "gf", "gluten free flour",
    "masa harina", "cornstarch", "corn starch", "flourless", "kelp noodles",
})
HONEY_WORDS = frozenset({"honey"})

# ---- ingredients -------------------------------------------------------------------

# Measures and sizes at the start of an ingredient line.
UNITS = (
    "cups?", "c", "tablespoons?", "tbsps?", "tbs", "tbl", "tb", "teaspoons?", "tsps?",
    "ounces?", "oz", "ozs", "fl oz", "fluid ounces?", "pounds?", "lbs?", "ib", "grams?",
    "gms?", "gr", "g", "kilograms?", "kilos?", "kg", "milliliters?", "millilitres?", "ml",
    "liters?", "litres?", "l", "cloves?", "cans?", "tins?", "jars?", "packages?", "pkgs?",
    "pkts?", "packets?", "packs?", "bags?", "boxes", "box", "bottles?", "pinch(?:es)?",
    "dash(?:es)?", "handfuls?", "slices?", "sticks?", "heads?", "bunch(?:es)?", "sprigs?",
    "pieces?", "pcs", "stalks?", "quarts?", "pints?", "drops?", "sheets?", "fillets?",
    "large", "medium", "small", "whole", "big", "heaped", "heaping", "level", "scant",
    "recipes?", "batch(?:es)?", "containers?", "tubs?", "blocks?", "cubes?", "dl", "cl",
    "msk", "tsk", "krm", "tl", "el", "inch(?:es)?", "in", "cm", "mm", "sachets?", "envelopes?",
    "squares?", "rounds?", "ears?", "knobs?", "splash(?:es)?", "glugs?", "strips?",
    "wedges?", "rashers?", "links?", "loaves", "loaf", "leaves", "lots", "sprinkle",
)

# Preparation words and descriptors: what was done to a food, not which food.
DESCRIPTORS = (
    "fresh", "freshly", "chopped", "minced", "diced", "sliced", "grated", "shredded",
    "crushed", "ground", "peeled", "seeded", "pitted", "cubed", "halved", "quartered",
    "trimmed", "rinsed", "drained", "softened", "melted", "room temperature", "finely",
    "roughly", "coarsely", "thinly", "thickly", "full[- ]fat", "low[- ]fat", "reduced[- ]fat",
    "fat[- ]free", "nonfat", "non[- ]fat", "fine[- ]grain", "extra[- ]virgin", "boneless",
    "skinless", "unsalted", "salted", "organic", "optional", "large", "small", "medium",
    "ripe", "overripe", "raw", "cooked", "frozen", "dried", "canned", "to taste", "plus more",
    "divided", "packed", "lightly", "heaping", "good quality", "good-quality",
    "store[- ]bought", "homemade", "pure", "plain", "unsweetened", "sweetened", "toasted",
    "roasted", "smashed", "mashed", "beaten", "whisked", "sifted", "cold", "warm", "hot",
    "boiling", "lukewarm", "chilled", "softened", "firm", "extra[- ]firm", "soft", "thick",
    "thin", "mild", "sharp", "aged", "mature", "natural", "whole", "baby", "young", "jumbo",
    "tiny", "big", "heavy", "light", "dark", "golden", "kosher", "fine", "coarse", "flaky",
    "loosely", "tightly", "well", "about", "approximately", "roughly", "generous", "scant",
    "leftover", "day[- ]old", "stale", "cut", "torn", "crumbled", "shaved", "zested",
    "juiced", "squeezed", "julienned", "spiralized", "blanched", "steamed", "grilled",
    "fried", "sautéed", "sauteed", "pickled", "marinated", "thawed", "defrosted", "washed",
    "cleaned", "deveined", "shelled", "hulled", "cored", "stemmed", "deseeded", "pitted",
    "sizes?", "sized", "bite[- ]sized?", "inch", "thick[- ]cut", "thin[- ]cut", "center[- ]cut",
    "lean", "extra[- ]lean", "bone[- ]in", "skin[- ]on", "unbleached", "bleached",
    "all[- ]natural", "reduced[- ]sodium", "low[- ]sodium", "no[- ]salt[- ]added", "premium",
    "high[- ]quality", "quality", "instant", "quick[- ]cooking", "old[- ]fashioned",
    "rolled", "steel[- ]cut", "self[- ]raising", "self[- ]rising", "all[- ]purpose",
    "granulated", "powdered", "confectioners'?", "confectioner'?s'?", "caster", "superfine",
    "packed", "spreadable", "refrigerated", "prepared", "jarred", "bottled", "boxed",
    "your favou?rite", "favou?rite", "any", "other", "more", "additional", "extra",
)

# Foods that nearly every recipe has and no photo shows; they never define a dish.
STAPLES = frozenset({
    "salt", "sea salt", "kosher salt", "table salt", "pepper", "black pepper",
    "salt and pepper", "salt & pepper", "water", "ice", "ice cube", "oil", "olive oil",
    "vegetable oil", "canola oil", "cooking spray", "sugar", "brown sugar", "flour",
    "butter", "baking soda", "baking powder", "vanilla", "vanilla extract", "yeast",
    "cornstarch", "corn starch", "egg", "milk", "neutral oil", "nonstick spray",
    "sunflower oil", "rapeseed oil", "avocado oil", "peppercorn", "white pepper",
    "bicarbonate of soda", "cream of tartar", "active yeast", "instant yeast",
    "dry yeast", "non-stick spray", "spray", "oil spray", "frying oil", "peanut oil",
    "grapeseed oil", "coconut oil", "salted butter", "unsalted butter", "garlic", "onion",
    "vinegar", "cooking oil", "icing sugar", "white sugar", "cane sugar", "salt pepper",
    "nutmeg", "cinnamon", "paprika", "cumin", "oregano", "thyme", "bay leaf", "chili powder",
    "garlic powder", "onion powder", "parsley", "lemon juice", "lime juice", "seasoning",
    "salt to taste", "pepper to taste", "water as needed", "egg yolk", "egg white",
    "vanilla bean paste", "almond extract", "red pepper flake", "chili flake",
    "cayenne", "cayenne pepper", "allspice", "clove", "ginger", "baking spray", "sprinkle",
    "garnish", "topping", "broth", "stock", "chicken broth", "vegetable broth",
    "chicken stock", "vegetable stock", "beef broth", "beef stock", "mayonnaise",
    "soy sauce", "honey", "maple syrup", "dijon mustard", "mustard", "ketchup", "shortening",
    "gelatin", "food coloring", "gel food coloring", "lemon zest", "orange zest",
    "lime zest",
})

# A food is minor (seasoning, fat, leavening: never what a photo shows) when it
# is a staple or its last word is one of these.
MINOR_FOOD_HEADS = frozenset({
    "salt", "oil", "sugar", "extract", "spice", "seasoning", "flake", "vinegar", "spray",
    "water", "yeast", "soda", "starch", "cinnamon", "nutmeg", "paprika", "cumin", "oregano",
    "thyme", "turmeric", "cardamom", "allspice", "zest", "essence", "coloring", "colouring",
    "ice", "garlic", "shallot", "mace", "clove", "bay", "peppercorn", "msg", "bouillon",
    "sweetener", "stevia", "juice", "paste", "granule", "cornstarch", "cornflour",
})
MINOR_FOODS = frozenset({
    "pepper", "black pepper", "white pepper", "salt pepper", "salt black pepper",
    "cayenne pepper", "ground pepper", "baking powder", "garlic powder", "onion powder",
    "chili powder", "curry powder", "bay leaf", "lemon juice", "lime juice", "soy sauce",
    "worcestershire sauce", "hot sauce", "fish sauce", "cream of tartar", "xanthan gum",
    "gelatin", "vanilla bean", "vanilla bean paste", "tomato paste", "flour", "egg",
    "egg yolk", "egg white", "butter", "milk", "broth", "stock", "water", "ice",
})

# Foods that change what a photo shows wherever they are in a recipe: a banana
# bread with chocolate is not the picture of one without. Recipes must agree on
# these to share an image. Token -> the food it counts as.
SIGNATURE_FOODS: dict[str, str] = {
    "chocolate": "chocolate", "cocoa": "chocolate", "cacao": "chocolate",
    "nutella": "chocolate", "oreo": "chocolate", "strawberry": "strawberry",
    "blueberry": "blueberry", "raspberry": "raspberry", "blackberry": "blackberry",
    "cherry": "cherry", "cranberry": "cranberry", "berry": "berry", "matcha": "matcha",
    "sprinkle": "sprinkles", "beet": "beet", "beetroot": "beet", "spinach": "spinach",
    "kale": "kale", "pomegranate": "pomegranate", "caramel": "caramel",
}

# Phrases in which a signature word names something else.
NOT_SIGNATURE = (
    "cherry tomato", "cherry tomatoes", "grape tomato", "cherry pepper", "cherry peppers",
    "chocolate chip cookie dough", "cocoa butter", "beet sugar", "kale chips",
)

# Token spellings and synonyms folded to one word, so two recipes name a dish alike.
SYNONYMS: dict[str, str] = {
    "mac": "macaroni", "doughnut": "donut", "doughnuts": "donut", "kabob": "kebab",
    "kabobs": "kebab", "kebabs": "kebab", "kabab": "kebab", "chilli": "chili",
    "chillies": "chili", "chilies": "chili", "chile": "chili", "chiles": "chili",
    "yoghurt": "yogurt", "lasagne": "lasagna", "omelette": "omelet", "omelettes": "omelet",
    "aubergine": "eggplant", "aubergines": "eggplant", "courgette": "zucchini",
    "courgettes": "zucchini", "prawn": "shrimp", "prawns": "shrimp", "barbecue": "bbq",
    "barbeque": "bbq", "bar-b-q": "bbq", "choc": "chocolate", "veggies": "vegetable",
    "veggie": "vegetable", "veg": "vegetable", "vegetables": "vegetable", "creme": "cream",
    "crème": "cream", "brulee": "brûlée", "crepe": "crêpe", "crepes": "crêpe",
    "pierogies": "pierogi", "perogies": "pierogi", "pierogis": "pierogi",
    "coriander": "cilantro", "scallion": "green onion", "scallions": "green onion",
    "capsicum": "bell pepper", "garbanzo": "chickpea", "garbanzos": "chickpea",
    "jalapeno": "jalapeño", "jalapenos": "jalapeño", "jalapeños": "jalapeño",
    "bolognaise": "bolognese", "ragù": "ragu", "tomatoe": "tomato", "fries": "fries",
    "chips": "chip", "éclair": "eclair", "éclairs": "eclair", "gyros": "gyro",
    "smores": "s'more", "s'mores": "s'more", "s’mores": "s'more", "bbq'd": "bbq",
    "cookie's": "cookie", "tofoo": "tofu", "yogourt": "yogurt",
}

# Plural words that stay as they are (singularizing them would change the word).
KEEP_PLURAL = frozenset({
    "hummus", "couscous", "asparagus", "molasses", "swiss", "brussels", "fries", "grits",
    "oats", "chips", "nachos", "citrus", "hibiscus", "octopus", "bass", "glass", "grass",
    "harissa", "tiramisu", "pancreas", "lemongrass", "watercress", "cress", "its", "this",
    "analysis", "bus", "plus", "gas", "pus", "lentils", "christmas", "always", "less",
    "express", "cheeseless", "boneless", "skinless", "pastis", "anis", "shiitakes",
    "jus", "s'mores", "mores", "noodles", "greens",
})

# The words of an English ingredient line, beyond the dish heads: recognizing
# most of a recipe's ingredients is what makes its dish identity trustworthy.
FOOD_WORDS = frozenset({
    "salt", "sugar", "oil", "butter", "powder", "pepper", "garlic", "flour", "vanilla",
    "cheese", "cream", "extract", "olive", "milk", "onion", "water", "juice", "lemon", "egg",
    "chicken", "cinnamon", "vinegar", "chocolate", "paprika", "parsley", "soda", "tomato",
    "clove", "vegetable", "parmesan", "lime", "leaf", "coconut", "syrup", "cocoa", "soy",
    "ginger", "seed", "rice", "beef", "sesame", "honey", "chili", "paste", "broth", "cumin",
    "cilantro", "maple", "cheddar", "mustard", "thyme", "orange", "chip", "stock", "flake",
    "apple", "zest", "corn", "seasoning", "oregano", "potato", "almond", "bean", "wine",
    "bread", "yogurt", "bell", "carrot", "basil", "nutmeg", "cornstarch", "avocado",
    "spinach", "pumpkin", "cider", "coriander", "mushroom", "strawberry", "pasta", "peanut",
    "dijon", "tortilla", "pork", "whipping", "buttermilk", "celery", "spice", "lettuce",
    "yolk", "oat", "cherry", "bacon", "noodle", "yeast", "crumb", "puree", "breadcrumb",
    "cabbage", "mayonnaise", "dill", "breast", "chipotle", "worcestershire", "pineapple",
    "cucumber", "pecan", "broccoli", "banana", "walnut", "salmon", "shallot", "rosemary",
    "chive", "panko", "feta", "cayenne", "blueberry", "thigh", "mint", "fish", "cookie",
    "tofu", "mozzarella", "cake", "zucchini", "squash", "adobo", "wheat", "shrimp",
    "allspice", "icing", "oreo", "pea", "spaghetti", "jalapeño", "kale", "miso", "pastry",
    "cranberry", "graham", "date", "cauliflower", "turkey", "scallion", "sourdough",
    "romaine", "sausage", "caper", "dressing", "cardamom", "chickpea", "dough", "crust",
    "espresso", "peppercorn", "sage", "ranch", "berry", "balsamic", "taco", "macaroni",
    "cracker", "turmeric", "hop", "lentil", "shoulder", "rib", "oyster", "starch",
    "serrano", "pecorino", "romano", "ricotta", "topping", "grape", "fillet", "sweetener",
    "goat", "jack", "sunflower", "tahini", "bouillon", "ghee", "shortening", "filling",
    "nutritional", "pickle", "ketchup", "radish", "chuck", "sprout", "mince", "curry",
    "cornflour", "quinoa", "herb", "molasses", "raspberry", "swordfish", "gochujang",
    "sriracha", "pepita", "steak", "ham", "arugula", "nut", "greens", "jam", "guacamole",
    "pudding", "chop", "coffee", "rhubarb", "jalapeno", "monk", "fruit", "shaoxing", "cane",
    "asparagus", "monterey", "mango", "chia", "cacao", "vinaigrette", "eggplant", "tamari",
    "marinara", "pistachio", "gelatin", "orzo", "biscuit", "fennel", "kidney", "caramel",
    "napa", "parmigiano", "reggiano", "plum", "brandy", "anise", "edamame", "ramen",
    "grapefruit", "masa", "harina", "applesauce", "artichoke", "leek", "pizza", "penne",
    "cornmeal", "lasagna", "flank", "capsicum", "kalamata", "glaze", "tartar", "meringue",
    "pico", "gallo", "sirloin", "shortcrust", "whip", "bicarbonate", "masala",
    "mirin", "poppy", "raisin", "peel", "lemongrass", "kimchi", "tapioca", "arborio",
    "burrito", "rind", "belly", "jasmine", "udon", "tuna", "soup", "yukon", "butternut",
    "matcha", "mandarin", "salsa", "bok", "choy", "flaxseed", "kabocha", "agave", "oaxaca",
    "salami", "barley", "rigatoni", "anchovy", "fontina", "brisket", "barbecue", "veal",
    "sherry", "watermelon", "rotisserie", "enchilada", "salad", "liqueur", "pretzel",
    "sambal", "naan", "cashew", "agar", "preserves", "marshmallow", "candy", "lamb", "palm",
    "pomegranate", "hazelnut", "passata", "polenta", "plantain", "pita", "couscous",
    "prosciutto", "marmalade", "poblano", "cotija", "mayo", "blackberry", "truffle",
    "linguine", "shell", "hoisin", "peach", "jelly", "nori", "shiitake", "biscoff", "sake",
    "gnocchi", "queso", "baguette", "fusilli", "havarti", "halibut", "beer", "tarragon",
    "provolone", "pepperoncini", "einkorn", "kernel", "marinade", "chorizo",
    "pancetta", "duck", "crab", "lobster", "clam", "mussel", "scallop", "cod", "trout",
    "tilapia", "sardine", "lard", "suet", "gruyere", "gruyère", "mascarpone", "brie",
    "gouda", "emmental", "halloumi", "burrata", "paneer", "labneh", "kefir", "custard",
    "ice", "vodka", "rum", "gin", "tequila", "whiskey", "bourbon", "kahlua", "baileys",
    "lemonade", "tea", "matzo", "farro", "bulgur", "spelt", "semolina", "rye", "buckwheat",
    "millet", "sorghum", "amaranth", "teff", "cassava", "arrowroot", "yam", "beet",
    "beetroot", "turnip", "parsnip", "rutabaga", "kohlrabi", "okra", "endive",
    "radicchio", "watercress", "chard", "collard", "fig", "apricot", "nectarine",
    "kiwi", "papaya", "guava", "lychee", "passion", "persimmon", "quince", "currant",
    "gooseberry", "elderflower", "lavender", "saffron", "sumac", "za'atar",
    "harissa", "furikake", "wasabi", "dashi", "kombu", "wakame", "tempeh", "seitan",
    "jackfruit", "nutella", "biscotti", "wafer", "sprinkles", "frosting",
    "fondant", "pie", "muffin", "roll", "bun", "croissant", "bagel", "brioche", "challah",
    "focaccia", "ciabatta", "pepperoni", "meatball", "tender", "drumstick", "wing",
    "tenderloin", "loin", "cutlet", "patty", "burger",
    "dumpling", "wonton", "ale", "malt", "lager", "stout", "tonic",
    "club", "seltzer", "sparkling", "champagne", "prosecco", "vermouth", "bitters",
    "triple", "sec", "cointreau", "amaretto", "frangelico", "schnapps",
})

# fmt: on
