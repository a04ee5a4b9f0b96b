"""The optional dish model: the OpenAI adapter against the fake chat completions
endpoint (structured output, every failure one DishModelFailed), and the rule
that its answer only names a dish the rules could not name, so that even a
model naming every recipe the same dish never matches two different dishes."""

from __future__ import annotations

import pytest

from services.image.adapters.dish_model import DishModelFailed, OpenAIDishModel
from services.image.recipes.analyzer import Recipe, analyze
from services.image.recipes.model_dish import DishAnswer, recipe_hash, refined
from services.image.recipes.similarity import match_key, score
from services.image.settings import DEFAULT_MODEL
from tests.image.conftest import dish_pairs
from tests.support.fake_openai import CHAT_USAGE, FakeOpenAI

PAIRS = dish_pairs()
UNNAMED = Recipe(title="Sunday supper", ingredients=("2 cups flour", "3 ripe bananas", "1 egg"))
ADVERSARY = DishAnswer("chocolate cake", "french", ("chocolate",))


def model(fake: FakeOpenAI, timeout: float = 2.0) -> OpenAIDishModel:
    return OpenAIDishModel(
        api_key="sk-test", model="gpt-4o-mini", base_url=fake.base_url, timeout_seconds=timeout
    )


def test_the_model_is_asked_with_a_json_schema_and_its_answer_and_tokens_read(fake) -> None:
    fake.dish_answer = {
        "dish": "  Banana Bread ",
        "cuisine": "American",
        "main_ingredients": ["Banana", "flour", ""],
    }
    dish_model = model(fake)
    recognition = dish_model.recognize(UNNAMED)
    dish_model.close()

    assert recognition.answer == DishAnswer("banana bread", "american", ("banana", "flour"))
    assert recognition.input_tokens == CHAT_USAGE["prompt_tokens"]
    assert recognition.output_tokens == CHAT_USAGE["completion_tokens"]
    [request] = fake.chat_requests
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["response_format"]["type"] == "json_schema"
    assert request.body["response_format"]["json_schema"]["strict"] is True
    assert "Sunday supper" in request.body["messages"][1]["content"]
    assert fake.requests == fake.chat_requests  # no image was asked for


@pytest.mark.parametrize(
    "answer",
    [
        FakeOpenAI.chat_malformed(),
        FakeOpenAI.chat_refusal(),
        FakeOpenAI.server_error(503),
        FakeOpenAI.chat_success({"dish": 3, "cuisine": "", "main_ingredients": []}),
        FakeOpenAI.chat_success({"dish": "", "cuisine": "", "main_ingredients": []}),
        FakeOpenAI.slow(1.0),
    ],
    ids=["malformed", "refusal", "5xx", "wrong-type", "no-dish", "timeout"],
)
def test_every_failure_is_one_dish_model_failed_and_is_not_retried(fake, answer) -> None:
    fake.script_chat(answer)
    dish_model = model(fake, timeout=0.3)
    with pytest.raises(DishModelFailed):
        dish_model.recognize(UNNAMED)
    dish_model.close()
    assert len(fake.chat_requests) == 1


def test_the_content_hash_is_the_recipe_text_not_its_id() -> None:
    other_id = Recipe(**{**UNNAMED.__dict__, "recipe_id": "another"})
    assert recipe_hash(other_id) == recipe_hash(UNNAMED)
    assert recipe_hash(Recipe(title="Sunday supper!")) != recipe_hash(UNNAMED)


def test_the_answer_names_only_a_dish_the_rules_could_not_name() -> None:
    unnamed = analyze(UNNAMED)
    assert unnamed.dish_identity == ""
    assert match_key(DEFAULT_MODEL, "1024x1024", unnamed) is None
    named_by_model = refined(unnamed, ADVERSARY)
    assert named_by_model.dish_identity == "model:chocolate cake"
    assert match_key(DEFAULT_MODEL, "1024x1024", named_by_model) is not None
    # A dish the rules named is theirs, whatever the model says.
    cake = analyze(Recipe(title="Banana Bread", ingredients=("3 bananas", "2 cups flour")))
    assert refined(cake, ADVERSARY) == cake
    assert refined(unnamed, None) == unnamed


def test_a_model_naming_every_recipe_the_same_dish_never_matches_a_different_dish_pair() -> None:
    fooled = {key: refined(analyze(recipe), ADVERSARY) for key, recipe in PAIRS.recipes.items()}
    # The fixture has recipes the rules cannot name: the adversary named them.
    assert any(context.dish_identity.startswith("model:") for context in fooled.values())
    matched = [
        (PAIRS.recipes[a].title, PAIRS.recipes[b].title)
        for a, b, _ in PAIRS.different
        if max(score(fooled[a], fooled[b]), score(fooled[b], fooled[a])) > 0.0
    ]
    assert matched == []
    # Nor does it change any labelled pair's score: it never outranks the rules.
    for a, b, _ in PAIRS.same + PAIRS.different:
        rules = score(analyze(PAIRS.recipes[a]), analyze(PAIRS.recipes[b]))
        if fooled[a].dish_identity.startswith("model:") != fooled[b].dish_identity.startswith(
            "model:"
        ):
            assert score(fooled[a], fooled[b]) == 0.0
        elif not fooled[a].dish_identity.startswith("model:"):
            assert score(fooled[a], fooled[b]) == rules
