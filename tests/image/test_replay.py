"""The replay (tests/image/replay.py) on a subset, against the running pair with the
offline provider, on SQLite and PostgreSQL: the cache never costs more than no
cache, similar reuse never more than exact caching, and no similar hit joins two
recipes labelled as different dishes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.image.conftest import dish_pairs
from tests.image.replay import build_stream, load_recipes, pair_recall, render, replay
from tests.image.test_analyzer import RECIPES, real_recipes

PAIRS = dish_pairs()
SAME = {frozenset((a, b)) for a, b, _ in PAIRS.same}
DIFFERENT = {frozenset((a, b)) for a, b, _ in PAIRS.different}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_database(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    """A factory of fresh migrated databases on one backend: one for each run."""
    if request.param == "sqlite":
        databases = request.getfixturevalue("sqlite_databases")

        @contextmanager
        def sqlite() -> Iterator[str]:
            yield databases.create_copy(tmp_path)

        return sqlite
    databases = request.getfixturevalue("postgres_databases")

    @contextmanager
    def postgresql() -> Iterator[str]:
        url = databases.create_copy()
        try:
            yield url
        finally:
            databases.drop(url.rsplit("/", 1)[1])

    return postgresql


def assert_invariants(report) -> None:  # type: ignore[no-untyped-def]
    assert report.spend_with_similar_micros <= report.spend_exact_only_micros
    assert report.spend_exact_only_micros < report.spend_no_cache_micros
    exact, similar = report.exact_only, report.with_similar
    assert exact.similar_hits == 0
    assert exact.generated + exact.exact_hits == report.requests
    assert similar.generated + similar.exact_hits + similar.similar_hits == report.requests
    assert similar.uncached_micros == report.spend_no_cache_micros
    assert exact.exact_hits >= report.requests - report.distinct_recipes
    # Only generations are charged.
    assert similar.generated <= exact.generated


def test_the_replay_of_the_labelled_recipes_saves_money_and_never_shows_another_dish(
    fresh_database,
) -> None:
    stream = build_stream(PAIRS.recipes, repeat_share=0.3, seed=11)
    report = replay(stream, database=fresh_database)
    same = [(a, b) for a, b, _ in PAIRS.same]
    print("\n" + "\n".join(render(report, same)))

    assert_invariants(report)
    pairs = [frozenset((hit.asked_key, hit.reused_key)) for hit in report.with_similar.similar]
    assert pairs, "no similar hit at all: the similar cache saves nothing"
    assert not [p for p in pairs if p in DIFFERENT]
    # Every reuse joins two recipes a person labelled as the same dish.
    assert all(p in SAME for p in pairs), [
        (h.asked_title, h.reused_title) for h in report.with_similar.similar
    ]
    assert report.spend_with_similar_micros < report.spend_exact_only_micros
    # Most labelled same-dish pairs end up answered with one image.
    joined, asked = pair_recall(report.with_similar, same)
    assert asked == len(same) and joined / asked >= 0.6, (joined, asked)


def test_the_replay_of_real_recipes_keeps_its_invariants() -> None:
    real_recipes()  # skips (fails under CI) when the shared file is absent
    recipes = load_recipes(RECIPES)
    subset = {key: recipes[key] for key in list(recipes)[:120]}
    subset |= {key: recipes[key] for key in PAIRS.recipes}
    report = replay(build_stream(subset, repeat_share=0.2, seed=3))
    assert_invariants(report)
    for hit in report.with_similar.similar:
        assert frozenset((hit.asked_key, hit.reused_key)) not in DIFFERENT
        assert hit.similarity >= 0.6
