"""The cache hit's hot path: GetCacheStats from totals kept on write, equal
to a direct count of the table at every step (hits written in batches,
entries expired, invalidated, purged and replaced); a hit's usage record
through the outbox, sent once even when its row is sent again by a settler;
and the recipe memo, which answers what the analyzer answers."""

from __future__ import annotations

from datetime import timedelta

from recipeimage.image.v1 import image_service_pb2 as pb
from sqlalchemy import func, select

from services.image.app.recipe_memo import RecipeMemo
from services.image.domain.accounting import Outcome, Usage
from services.image.domain.settlement import CLAIM_PERIOD, Settlement
from services.image.recipes.analyzer import Recipe, analyze
from services.image.recipes.prompts import build_prompt
from services.image.store.models import CacheEntry, PendingSettlement
from tests.image.conftest import CAKE, SOUP, generate_request, ledger
from tests.support.image_server import RunningPair


def direct_count(pair: RunningPair, purged_hits: tuple[int, int, int] = (0, 0, 0)):  # type: ignore[no-untyped-def]
    """(entries, exact, similar, saved) counted from the table itself (plus
    the hits of entries purged so far, which only the totals keep)."""
    now = pair.app.use_cases.queries.clock.now()
    with pair.app.sessions.begin() as session:
        live, exact, similar, saved = session.execute(
            select(
                func.count(CacheEntry.id).filter(CacheEntry.expires_at > now),
                func.coalesce(func.sum(CacheEntry.exact_hits), 0),
                func.coalesce(func.sum(CacheEntry.similar_hits), 0),
                func.coalesce(func.sum(CacheEntry.cost_saved_micros), 0),
            )
        ).one()
    return (
        live,
        exact + purged_hits[0],
        similar + purged_hits[1],
        saved + purged_hits[2],
    )


def reported(pair: RunningPair, tokens):  # type: ignore[no-untyped-def]
    stats = pair.image.GetCacheStats(pb.GetCacheStatsRequest(), metadata=tokens.admin())
    return (
        stats.entries,
        stats.exact_hits,
        stats.similar_hits,
        stats.total_cost_saved_micros,
    ), stats.misses


def test_cache_stats_equal_a_direct_count_through_hits_expiry_and_purge(
    pair: RunningPair, tokens, clock
) -> None:
    user = tokens.user("u1")
    pair.image.GenerateImage(generate_request(SOUP), metadata=user)
    clock.advance(timedelta(days=10))
    pair.image.GenerateImage(generate_request(CAKE), metadata=user)
    for _ in range(3):
        pair.image.GenerateImage(generate_request(SOUP), metadata=user)
    pair.image.GenerateImage(generate_request(CAKE), metadata=user)
    stats, misses = reported(pair, tokens)
    assert stats == direct_count(pair) and stats[:2] == (2, 4)
    assert misses == 2

    clock.advance(timedelta(days=21))  # the soup's entry expires, the cake's lives
    stats, misses = reported(pair, tokens)
    assert stats == direct_count(pair) and stats[0] == 1

    with pair.app.sessions.begin() as session:
        soup = session.scalars(select(CacheEntry).where(CacheEntry.expires_at <= clock.now())).one()
        soup_hits = (soup.exact_hits, soup.similar_hits, soup.cost_saved_micros)
    pair.image.PurgeExpiredCache(pb.PurgeExpiredCacheRequest(), metadata=tokens.admin())
    after, misses = reported(pair, tokens)
    assert after == stats == direct_count(pair, soup_hits)
    assert misses == 2

    pair.image.GenerateImage(generate_request(SOUP), metadata=user)  # stored again
    pair.image.GenerateImage(generate_request(SOUP), metadata=user)  # and hit
    stats, misses = reported(pair, tokens)
    assert stats == direct_count(pair, soup_hits) and misses == 3


def test_a_hits_record_reaches_the_ledger_through_the_outbox_once(
    pair: RunningPair, tokens, clock
) -> None:
    pair.image.GenerateImage(generate_request(SOUP), metadata=tokens.user("u1"))
    hit = pair.image.GenerateImage(
        generate_request(SOUP, request_id="h1"), metadata=tokens.user("u2")
    )
    assert hit.source == pb.IMAGE_SOURCE_CACHE_EXACT
    assert [(r.user_id, r.request_id, r.outcome) for r in ledger(pair)][1:] == [
        ("u2", "h1", "cache_hit_exact")
    ]
    with pair.app.sessions.begin() as session:
        assert session.scalar(select(func.count()).select_from(PendingSettlement)) == 0


def test_a_record_left_in_the_outbox_is_sent_by_the_settler_and_written_once(
    pair: RunningPair, tokens, clock
) -> None:
    """What a replica killed between answering a hit and sending its record
    leaves: the row, claimed by its writer. Any settler sends it once the
    claim period is over; sending it again writes nothing more."""
    usage = Usage(
        request_id="lost-1",
        user_id="u1",
        recipe_id="r-soup",
        prompt="a bowl of soup",
        size="1024x1024",
        quality="medium",
        model="gpt-image-2.5-sunburst",
        provider="offline",
        outcome=Outcome.CACHE_HIT_EXACT,
        success=True,
        cached=True,
        cache_hit="exact",
        cost_saved_micros=1000,
    )
    settler = pair.app.use_cases.settler
    row = settler.queue_alone(Settlement.record(usage))
    assert row.row_id is not None
    assert pair.app.settle_pending(clock.now()) == 0  # still its writer's
    assert pair.app.settle_pending(clock.now() + CLAIM_PERIOD) == 1
    assert settler.deliver_records([row]) == 1  # a second sender: a duplicate
    assert [(r.request_id, r.outcome) for r in ledger(pair)] == [("lost-1", "cache_hit_exact")]
    with pair.app.sessions.begin() as session:
        assert session.scalar(select(func.count()).select_from(PendingSettlement)) == 0


def test_the_recipe_memo_answers_what_the_analyzer_answers_and_stays_bounded() -> None:
    memo = RecipeMemo(max_entries=2)
    recipes = [
        Recipe(title="Tomato Soup", ingredients=("6 ripe tomatoes",)),
        Recipe(title="Tomato Soup", ingredients=("6 ripe tomatoes",), recipe_id="other id"),
        Recipe(title="Chocolate Cake", ingredients=("2 cups flour", "1 cup cocoa")),
        Recipe(title="Beef Stew", ingredients=("1 lb beef", "2 carrots")),
    ]
    for recipe in recipes * 2:
        context, prompt = memo.understand(recipe, 1000)
        assert context == analyze(recipe)
        assert prompt == build_prompt(analyze(recipe), 1000)
    assert memo.understand(recipes[0], 40)[1] == build_prompt(analyze(recipes[0]), 40)
    assert len(memo) == 2
