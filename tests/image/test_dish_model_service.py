"""The optional dish model through the running services and the fake OpenAI
server, on SQLite and PostgreSQL: used only when configured and only for a
recipe the rules could not name, asked once per recipe text, recorded in the
ledger with its cost and kind, and any failure leaves the rules' answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as pb

from services.common.prices import PriceTable
from tests.image.conftest import CAKE, generate_request, ledger
from tests.support.fake_openai import CHAT_USAGE, FakeOpenAI
from tests.support.image_server import RunningPair, running_openai_pair, running_pair

DISH_MODEL = "gpt-4o-mini"
# A title and foods the rules name no dish for.
UNNAMED = pb.Recipe(
    recipe_id="r-unnamed",
    title="Sunday supper",
    ingredients=["3 ripe bananas", "2 cups flour", "1 egg"],
    instructions=["Mash, mix and bake for an hour."],
)


@pytest.fixture
def dish_pair(database_url: str, authenticator, fake: FakeOpenAI) -> Iterator[RunningPair]:
    with running_openai_pair(
        database_url,
        authenticator,
        fake,
        dish_model=DISH_MODEL,
        dish_model_timeout_seconds=0.5,
    ) as pair:
        yield pair


def dish_records(pair: RunningPair) -> list:  # type: ignore[type-arg]
    return [row for row in ledger(pair) if row.kind == "dish_recognition"]


def test_an_unnamed_dish_is_named_by_the_model_once_and_its_cost_recorded(
    dish_pair, fake, tokens, prices: PriceTable
) -> None:
    reply = dish_pair.image.GenerateImage(generate_request(UNNAMED), metadata=tokens.user("u1"))

    assert reply.context.dish_identity == "model:banana bread"
    assert len(fake.chat_requests) == 1
    [record] = dish_records(dish_pair)
    cost = prices.text_model(DISH_MODEL).cost_micros(
        CHAT_USAGE["prompt_tokens"], CHAT_USAGE["completion_tokens"]
    )
    assert cost > 0
    assert (record.user_id, record.model, record.outcome, record.cost_micros) == (
        "u1",
        DISH_MODEL,
        "generated",
        cost,
    )
    assert (record.input_tokens, record.output_tokens) == (412, 24)
    assert record.request_id != reply.request_id
    images = [row for row in ledger(dish_pair) if row.kind == "image"]
    assert [row.outcome for row in images] == ["generated"]
    # ListUsage shows the record with its kind.
    listed = dish_pair.budget.stub.ListUsage(
        budget_pb.ListUsageRequest(user_id="u1"), metadata=tokens.user("u1")
    )
    kinds = sorted(record.kind for record in listed.usage_records)
    assert kinds == [budget_pb.USAGE_KIND_IMAGE, budget_pb.USAGE_KIND_DISH_RECOGNITION]

    # Recorded without a reservation by design: the ledger reconciles, and
    # GetUsageStats shows the text model on its own row.
    reconciliation = dish_pair.budget.stub.ReconcileLedger(
        budget_pb.ReconcileLedgerRequest(), metadata=tokens.admin()
    )
    assert reconciliation.consistent, reconciliation.differences
    stats = dish_pair.budget.stub.GetUsageStats(
        budget_pb.GetUsageStatsRequest(user_id="u1", period=budget_pb.STATS_PERIOD_DAY),
        metadata=tokens.user("u1"),
    )
    [text_row] = [row for row in stats.breakdown if row.model == DISH_MODEL]
    assert (text_row.generations, text_row.cost_micros) == (1, cost)
    assert stats.total_cost_micros == cost + images[0].cost_micros

    # The same recipe text again (another id, another user): no second call.
    again = pb.Recipe()
    again.CopyFrom(UNNAMED)
    again.recipe_id = "r-copy"
    second = dish_pair.image.GenerateImage(generate_request(again), metadata=tokens.user("u2"))
    assert second.context.dish_identity == "model:banana bread"
    assert len(fake.chat_requests) == 1
    assert len(dish_records(dish_pair)) == 1


def test_a_dish_the_rules_name_never_asks_the_model(dish_pair, fake, tokens) -> None:
    reply = dish_pair.image.GenerateImage(generate_request(CAKE), metadata=tokens.user("u1"))
    assert reply.context.dish_identity
    assert not reply.context.dish_identity.startswith("model:")
    assert fake.chat_requests == []
    assert dish_records(dish_pair) == []


@pytest.mark.parametrize(
    "answer",
    [
        FakeOpenAI.server_error(500),
        FakeOpenAI.chat_malformed(),
        FakeOpenAI.chat_refusal(),
        FakeOpenAI.slow(2.0),
    ],
    ids=["5xx", "malformed", "refusal", "timeout"],
)
def test_a_failing_model_leaves_the_rules_answer_and_the_image_is_made(
    dish_pair, fake, tokens, answer
) -> None:
    fake.script_chat(answer)
    reply = dish_pair.image.GenerateImage(generate_request(UNNAMED), metadata=tokens.user("u1"))
    assert reply.image.image_id
    assert reply.context.dish_identity == ""
    assert len(fake.chat_requests) == 1
    assert dish_records(dish_pair) == []
    # Nothing was kept: the next request asks again.
    again = pb.Recipe()
    again.CopyFrom(UNNAMED)
    again.title = "Sunday supper at home"
    dish_pair.image.GenerateImage(generate_request(again), metadata=tokens.user("u1"))
    assert len(fake.chat_requests) == 2


def test_without_a_dish_model_setting_the_model_is_never_asked(
    database_url, authenticator, fake, tokens
) -> None:
    with running_openai_pair(database_url, authenticator, fake) as pair:
        reply = pair.image.GenerateImage(generate_request(UNNAMED), metadata=tokens.user("u1"))
        assert reply.context.dish_identity == ""
        assert fake.chat_requests == []
        assert dish_records(pair) == []


def test_without_an_openai_key_the_dish_model_is_off(
    database_url, authenticator, fake, tokens
) -> None:
    with running_pair(
        database_url,
        authenticator,
        dish_model=DISH_MODEL,
        openai_base_url=fake.base_url,
    ) as pair:
        assert not pair.app.settings.dish_model_enabled
        reply = pair.image.GenerateImage(generate_request(UNNAMED), metadata=tokens.user("u1"))
        assert reply.context.dish_identity == ""
        assert fake.requests == []
