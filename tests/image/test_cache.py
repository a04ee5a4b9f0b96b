"""The image cache through ImageService's gRPC edge, with a real BudgetService, on
SQLite and PostgreSQL: similar-dish hits and what they may never do, expiry,
the purge job and RPC, invalidation, and GetCacheStats."""

from __future__ import annotations

import time
from datetime import timedelta

import grpc
import pytest
from recipeimage.image.v1 import image_service_pb2 as pb
from sqlalchemy import func, select

from services.image.recipes.analyzer import analyze
from services.image.store.models import CacheEntry
from tests.image.conftest import (
    HIGH,
    LOW,
    MEDIUM,
    dish_pairs,
    ledger,
    per_image,
    proto_recipe,
    refusal,
    reservation_states,
)
from tests.support.image_server import running_pair

PAIRS = dish_pairs()
# Two recipes of mac and cheese from different sites (similarity about 0.91).
MAC_A = proto_recipe(PAIRS.recipes["491"])
MAC_B = proto_recipe(PAIRS.recipes["568"])
# Chicken bacon ranch, and chicken bacon ranch pasta: another dish.
RANCH = proto_recipe(PAIRS.recipes["545"])
RANCH_PASTA = proto_recipe(PAIRS.recipes["36"])
# A rhubarb tart and a strawberry tart, both in French: two dishes the vocabulary reads.
TARTE_RHUBARBE = proto_recipe(PAIRS.recipes["185"])
TARTE_FRAISES = proto_recipe(PAIRS.recipes["186"])
# A German compound the vocabulary does not know: a dish the service cannot tell.
KARTOFFELGULASCH = proto_recipe(PAIRS.recipes["808"])


def generate(pair, recipe, tokens, user="u1", **fields):  # type: ignore[no-untyped-def]
    return pair.image.GenerateImage(
        pb.GenerateImageRequest(recipe=recipe, **fields), metadata=tokens.user(user)
    )


def stats(pair, tokens, **fields) -> pb.GetCacheStatsResponse:  # type: ignore[no-untyped-def]
    return pair.image.GetCacheStats(pb.GetCacheStatsRequest(**fields), metadata=tokens.service())


# ---- similar-dish hits ----------------------------------------------------------------


def test_reuse_across_recipes_is_opt_in(pair, tokens) -> None:
    first = generate(pair, MAC_A, tokens)
    assert first.source == pb.IMAGE_SOURCE_GENERATED
    assert first.context.dish_identity == "cheese macaroni"

    own = generate(pair, MAC_B, tokens, user="u2")
    assert own.source == pb.IMAGE_SOURCE_GENERATED
    assert own.image.image_id != first.image.image_id


def test_a_similar_hit_reports_its_similarity_and_the_real_cost_saved(pair, tokens, prices) -> None:
    first = generate(pair, MAC_A, tokens)
    reused = generate(pair, MAC_B, tokens, user="u2", allow_similar=True)

    assert reused.source == pb.IMAGE_SOURCE_CACHE_SIMILAR
    assert reused.image.image_id == first.image.image_id
    assert 0.6 <= reused.similarity < 1.0
    assert (reused.cost_micros, reused.cost_saved_micros) == (0, first.cost_micros)
    assert reused.context.dish_identity == first.context.dish_identity
    assert reused.prompt != first.prompt  # its own prompt, another recipe's image

    records = ledger(pair)
    assert [r.outcome for r in records] == ["generated", "cache_hit_similar"]
    hit = records[1]
    assert (hit.user_id, hit.cost_micros, hit.cost_saved_micros) == ("u2", 0, first.cost_micros)
    assert (hit.cached, hit.cache_hit, hit.success) == (True, "similar", True)
    assert reservation_states(pair) == ["committed"]  # a hit reserves nothing

    reply = stats(pair, tokens)
    assert (reply.entries, reply.exact_hits, reply.similar_hits, reply.misses) == (1, 0, 1, 1)
    assert reply.similar_hit_rate == 0.5 and reply.exact_hit_rate == 0.0
    assert reply.total_cost_saved_micros == first.cost_micros
    [entry] = reply.most_used_entries
    assert (entry.uses, entry.similar_hits, entry.exact_hits) == (1, 1, 0)
    assert entry.dish == first.context.dish


def test_the_caller_may_tighten_the_threshold_but_not_loosen_it(pair, tokens) -> None:
    generate(pair, MAC_A, tokens)
    strict = generate(pair, MAC_B, tokens, user="u2", allow_similar=True, min_similarity=0.99)
    assert strict.source == pb.IMAGE_SOURCE_GENERATED

    error, details = refusal(
        lambda: generate(pair, MAC_B, tokens, allow_similar=True, min_similarity=1.5)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details["BadRequest"].field_violations] == ["min_similarity"]


def test_a_threshold_set_above_the_score_refuses_what_the_default_allows(
    database_url, authenticator, clock, tokens
) -> None:
    with running_pair(database_url, authenticator, clock=clock, similarity_threshold=0.99) as pair:
        generate(pair, MAC_A, tokens)
        loose = generate(pair, MAC_B, tokens, user="u2", allow_similar=True, min_similarity=0.1)
        assert loose.source == pb.IMAGE_SOURCE_GENERATED


def test_a_better_quality_serves_a_lower_one_never_the_reverse(pair, tokens, prices) -> None:
    high = generate(pair, MAC_A, tokens, quality=HIGH)
    medium = generate(pair, MAC_B, tokens, user="u2", allow_similar=True, quality=MEDIUM)
    assert medium.source == pb.IMAGE_SOURCE_CACHE_SIMILAR
    assert medium.image.image_id == high.image.image_id
    assert medium.quality == MEDIUM
    # What this medium request would have cost, not what the high image did.
    assert medium.cost_saved_micros == per_image(prices, "medium")

    low_first = generate(pair, MAC_A, tokens, quality=LOW, user="u3")
    assert low_first.source == pb.IMAGE_SOURCE_GENERATED
    assert low_first.image.image_id != high.image.image_id


def test_a_lower_quality_or_another_model_or_size_is_never_served(pair, tokens) -> None:
    generate(pair, MAC_A, tokens, quality=LOW)
    better = generate(pair, MAC_B, tokens, user="u2", allow_similar=True, quality=HIGH)
    assert better.source == pb.IMAGE_SOURCE_GENERATED
    tall = generate(pair, MAC_B, tokens, user="u2", allow_similar=True, size="1024x1536")
    assert tall.source == pb.IMAGE_SOURCE_GENERATED
    other = generate(
        pair, MAC_B, tokens, user="u2", allow_similar=True, model="gpt-image-2.5-flare"
    )
    assert other.source == pb.IMAGE_SOURCE_GENERATED
    assert [r.outcome for r in ledger(pair)] == ["generated"] * 4


def test_different_dishes_and_unknown_dishes_never_share_an_image(pair, tokens) -> None:
    generate(pair, RANCH, tokens)
    pasta = generate(pair, RANCH_PASTA, tokens, user="u2", allow_similar=True)
    assert pasta.source == pb.IMAGE_SOURCE_GENERATED

    rhubarb = generate(pair, TARTE_RHUBARBE, tokens)
    assert rhubarb.context.dish_identity == "rhubarb tart"  # French, read
    strawberry = generate(pair, TARTE_FRAISES, tokens, user="u2", allow_similar=True)
    assert strawberry.context.dish_identity == "strawberry tart"
    assert strawberry.source == pb.IMAGE_SOURCE_GENERATED

    unknown = generate(pair, KARTOFFELGULASCH, tokens)
    assert unknown.context.dish_identity == ""
    # Not even the same unknown recipe with one more line is matched.
    changed = pb.Recipe()
    changed.CopyFrom(KARTOFFELGULASCH)
    changed.ingredients.append("1 Prise Zimt")
    again = generate(pair, changed, tokens, user="u3", allow_similar=True)
    assert again.source in (pb.IMAGE_SOURCE_GENERATED, pb.IMAGE_SOURCE_CACHE_EXACT)
    assert again.source != pb.IMAGE_SOURCE_CACHE_SIMILAR


def test_a_callers_own_prompt_is_never_matched_to_another_recipe(pair, tokens) -> None:
    generate(pair, MAC_A, tokens, prompt="Macaroni and cheese in a cast iron pan, top view")
    reused = generate(pair, MAC_B, tokens, user="u2", allow_similar=True)
    assert reused.source == pb.IMAGE_SOURCE_GENERATED
    own_prompt = generate(
        pair, MAC_B, tokens, user="u3", allow_similar=True, prompt="Mac and cheese, close up"
    )
    assert own_prompt.source == pb.IMAGE_SOURCE_GENERATED


def test_the_response_says_what_the_service_understood(pair, tokens) -> None:
    reply = generate(pair, MAC_A, tokens)
    context = reply.context
    assert context.dish == "crockpot macaroni & cheese" or "macaroni" in context.dish
    assert context.course in ("side dish", "main course")
    assert context.cooking_method == "slow-cooked"
    assert context.complexity in ("simple", "moderate", "complex")
    assert "vegetarian" in context.dietary_tags
    assert context.cuisine


# ---- expiry, purge and invalidation ------------------------------------------------


def test_entries_expire_after_the_configured_ttl(
    database_url, authenticator, clock, tokens
) -> None:
    with running_pair(database_url, authenticator, clock=clock, cache_ttl_days=1) as pair:
        first = generate(pair, MAC_A, tokens)
        clock.advance(timedelta(hours=23))
        assert generate(pair, MAC_A, tokens).source == pb.IMAGE_SOURCE_CACHE_EXACT
        assert generate(pair, MAC_B, tokens, allow_similar=True).source == (
            pb.IMAGE_SOURCE_CACHE_SIMILAR
        )
        clock.advance(timedelta(hours=1))
        assert generate(pair, MAC_B, tokens, user="u2", allow_similar=True).source == (
            pb.IMAGE_SOURCE_GENERATED
        )
        again = generate(pair, MAC_A, tokens)
        assert again.source == pb.IMAGE_SOURCE_GENERATED
        # The first image is still readable: expiry ends its reuse, not its life.
        stored = pair.image.GetImage(
            pb.GetImageRequest(image_id=first.image.image_id), metadata=tokens.user("u1")
        )
        assert stored.image.image_id == first.image.image_id


def test_the_purge_rpc_deletes_expired_entries_and_keeps_their_history(pair, tokens, clock) -> None:
    first = generate(pair, MAC_A, tokens)
    generate(pair, MAC_A, tokens)  # an exact hit
    generate(pair, MAC_B, tokens, allow_similar=True)  # a similar hit
    clock.advance(timedelta(days=29))
    generate(pair, RANCH, tokens)  # lives on
    clock.advance(timedelta(days=2))

    for who in (tokens.user("u1"), tokens.service()):
        error, _ = refusal(
            lambda who=who: pair.image.PurgeExpiredCache(
                pb.PurgeExpiredCacheRequest(), metadata=who
            )
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    purged = pair.image.PurgeExpiredCache(pb.PurgeExpiredCacheRequest(), metadata=tokens.admin())
    assert purged.purged_entries == 1
    again = pair.image.PurgeExpiredCache(pb.PurgeExpiredCacheRequest(), metadata=tokens.admin())
    assert again.purged_entries == 0

    reply = stats(pair, tokens)
    assert (reply.entries, reply.misses, reply.exact_hits, reply.similar_hits) == (1, 2, 1, 1)
    assert reply.total_cost_saved_micros == 2 * first.cost_micros
    assert [e.dish for e in reply.most_used_entries] == [analyze(PAIRS.recipes["545"]).dish]
    # The purged entry's image stays readable.
    pair.image.GetImage(
        pb.GetImageRequest(image_id=first.image.image_id), metadata=tokens.user("u1")
    )


def entry_rows(pair) -> int:  # type: ignore[no-untyped-def]
    with pair.app.sessions.begin() as session:
        return int(session.scalar(select(func.count(CacheEntry.id))) or 0)


def test_the_purge_job_runs_by_itself(database_url, authenticator, clock, tokens) -> None:
    with running_pair(
        database_url, authenticator, clock=clock, cache_purge_interval_seconds=0.05
    ) as pair:
        assert pair.app.purger.running
        generate(pair, MAC_A, tokens)
        clock.advance(timedelta(days=31))
        deadline = time.monotonic() + 5
        while entry_rows(pair) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert entry_rows(pair) == 0
        assert stats(pair, tokens).misses == 1  # the history is kept


def test_an_admin_invalidates_one_bad_image_for_exact_and_similar_requests(pair, tokens) -> None:
    bad = generate(pair, MAC_A, tokens)
    other = generate(pair, RANCH, tokens)

    def invalidate(image_id: str, who=None):  # type: ignore[no-untyped-def]
        return pair.image.InvalidateCachedImage(
            pb.InvalidateCachedImageRequest(image_id=image_id), metadata=who or tokens.admin()
        )

    error, _ = refusal(lambda: invalidate(bad.image.image_id, tokens.service()))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error, details = refusal(lambda: invalidate("nope"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details["BadRequest"].field_violations] == ["image_id"]
    error, _ = refusal(lambda: invalidate("0" * 64))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    assert invalidate(bad.image.image_id).invalidated_entries == 1
    error, _ = refusal(lambda: invalidate(bad.image.image_id))
    assert error.code() == grpc.StatusCode.NOT_FOUND  # nothing live holds it any more

    similar = generate(pair, MAC_B, tokens, user="u2", allow_similar=True)
    assert similar.source == pb.IMAGE_SOURCE_GENERATED
    exact = generate(pair, MAC_A, tokens, user="u3")
    assert exact.source == pb.IMAGE_SOURCE_GENERATED
    assert generate(pair, RANCH, tokens).image.image_id == other.image.image_id
    assert stats(pair, tokens).entries == 3


# ---- statistics -----------------------------------------------------------------------


def test_most_used_entries_are_paged_with_an_opaque_token(pair, tokens) -> None:
    recipes = [MAC_A, RANCH, RANCH_PASTA]
    for uses, recipe in zip((2, 3, 0), recipes, strict=True):
        generate(pair, recipe, tokens)
        for _ in range(uses):
            generate(pair, recipe, tokens)

    first = stats(pair, tokens, page_size=2)
    assert [e.uses for e in first.most_used_entries] == [3, 2]
    assert first.next_page_token
    second = stats(pair, tokens, page_size=2, page_token=first.next_page_token)
    assert [e.uses for e in second.most_used_entries] == [0]
    assert second.next_page_token == ""
    assert (first.entries, first.exact_hits, first.misses) == (3, 5, 3)
    assert first.exact_hit_rate == pytest.approx(5 / 8)
    assert first.hit_rate == pytest.approx(5 / 8)
    entry = first.most_used_entries[0]
    assert entry.entry_id and entry.image.image_id and entry.model
    assert entry.quality == MEDIUM
    assert entry.last_hit_time.seconds > 0 and entry.expire_time.seconds > 0

    everything = stats(pair, tokens, page_size=1000)
    assert len(everything.most_used_entries) == 3

    for fields, field in (({"page_size": -1}, "page_size"), ({"page_token": "x"}, "page_token")):
        error, details = refusal(lambda fields=fields: stats(pair, tokens, **fields))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in details["BadRequest"].field_violations] == [field]
