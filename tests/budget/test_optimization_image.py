"""Cost optimization's caching and waste figures from what a real ImageService
records: the dish, allow_similar, a caller's prompt, and the image generated
or served reach the ledger, and the analysis counts from them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from recipeimage.budget.v1 import optimization_pb2 as opb
from recipeimage.image.v1 import image_service_pb2 as pb

from tests.image.conftest import dish_pairs, ledger, proto_recipe
from tests.support.budget_server import ManualClock
from tests.support.image_server import RunningPair, running_pair

PAIRS = dish_pairs()
# Two recipes of mac and cheese from different sites: one dish.
MAC_A = proto_recipe(PAIRS.recipes["491"])
MAC_B = proto_recipe(PAIRS.recipes["568"])


@pytest.fixture
def pair(database_url: str, authenticator, clock: ManualClock) -> Iterator[RunningPair]:
    with running_pair(database_url, authenticator, clock=clock) as running:
        yield running


def generate(pair, recipe, tokens, user, **fields):  # type: ignore[no-untyped-def]
    return pair.image.GenerateImage(
        pb.GenerateImageRequest(recipe=recipe, **fields), metadata=tokens.user(user)
    )


def analyze(pair, tokens, user):  # type: ignore[no-untyped-def]
    return pair.budget.stub.AnalyzeCostOptimization(
        opb.AnalyzeCostOptimizationRequest(), metadata=tokens.user(user)
    )


def test_a_dish_generated_again_with_allow_similar_off_is_a_caching_suggestion(
    pair, tokens, clock
) -> None:
    def later():  # type: ignore[no-untyped-def]
        clock.advance(timedelta(seconds=1))

    first = generate(pair, MAC_A, tokens, "u1")
    later()
    again = generate(pair, MAC_B, tokens, "u2")  # allow_similar off: generated anew
    later()
    hit = generate(pair, MAC_B, tokens, "u2", allow_similar=True)  # its own, exact
    later()
    own = generate(pair, MAC_B, tokens, "u3", prompt="A bowl of mac and cheese, overhead")
    assert [r.source for r in (first, again, hit, own)] == [
        pb.IMAGE_SOURCE_GENERATED,
        pb.IMAGE_SOURCE_GENERATED,
        pb.IMAGE_SOURCE_CACHE_EXACT,
        pb.IMAGE_SOURCE_GENERATED,
    ]

    records = ledger(pair)
    assert [(r.user_id, r.outcome) for r in records] == [
        ("u1", "generated"),
        ("u2", "generated"),
        ("u2", "cache_hit_exact"),
        ("u3", "generated"),
    ]
    a, b, b_hit, c = records
    assert a.dish_key is not None and len(a.dish_key) == 64
    assert b.dish_key == a.dish_key == b_hit.dish_key  # one dish, hashed
    assert (a.similar_allowed, b.similar_allowed, b_hit.similar_allowed) == (False, False, True)
    assert (c.custom_prompt, c.dish_key) == (True, None)  # a caller's prompt has no dish
    assert not (a.custom_prompt or b.custom_prompt)
    assert a.image_id == first.image.image_id
    assert b.image_id == b_hit.image_id == again.image.image_id

    clock.advance(timedelta(minutes=1))
    u2 = analyze(pair, tokens, "u2")
    assert (u2.caching.similar_off_dish_cached, u2.caching.similar_off_dish_cached_cost_micros) == (
        1,
        b.cost_micros,
    )
    caching = next(s for s in u2.suggestions if s.kind == opb.SUGGESTION_KIND_CACHING)
    assert (caching.records, caching.savings_micros) == (1, b.cost_micros)
    assert (u2.caching.cache_hits, u2.caching.generations) == (1, 1)
    assert u2.caching.hit_rate_basis_points == 5_000
    assert u2.caching.system_hit_rate_basis_points == 2_500  # 1 hit, 3 generations
    assert u2.waste.unserved_generations == 0  # its image served its second request

    u1 = analyze(pair, tokens, "u1")
    # u1 asked first: nothing was cached; its image was never served again.
    assert u1.caching.similar_off_dish_cached == 0
    assert not [s for s in u1.suggestions if s.kind == opb.SUGGESTION_KIND_CACHING]
    assert (u1.waste.unserved_generations, u1.waste.unserved_cost_micros) == (1, a.cost_micros)

    u3 = analyze(pair, tokens, "u3")
    (prompt,) = u3.prompt_efficiency
    assert prompt.custom_prompt_images == 1
    # The baseline is every user's built prompts (u3 has none of its own).
    assert prompt.built_prompt_images == 2
