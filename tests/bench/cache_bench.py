"""ImageService's cache on PostgreSQL: exact and similar-dish lookups with 100,000
and then 1,000,000 cache entries, through the repository and through GenerateImage
cache hits (which also record their usage at BudgetService).

    make bench BENCH=cache_bench

Creates its own database on RECIPEIMAGE_TEST_POSTGRES_URL's server, migrates
it, fills the cache with one INSERT ... SELECT per table (the keys computed by
PostgreSQL exactly as the service computes them), starts a real BudgetService
and ImageService in this process, and drops the database at the end. Each
figure is printed beside the baseline: its rate as a ratio of the baseline's,
and its p50 and p99 latency as multiples of the baseline's.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from datetime import UTC, datetime

import psycopg
from recipeimage.common.v1 import image_quality_pb2
from recipeimage.image.v1 import image_service_pb2 as pb

from services.budget.domain.admission import SystemRates, TierRates
from services.budget.domain.limits import Tier, TierLimits
from services.common.auth import Authenticator, Role
from services.common.db import create_db_engine, create_sessions
from services.image.domain.cache_policy import Candidate, best_similar, cache_key, quality_rank
from services.image.recipes.analyzer import RecipeContext, analyze
from services.image.recipes.similarity import match_key
from services.image.settings import DEFAULT_MODEL
from services.image.store.cache import CacheRepository
from tests.bench.harness import Measurement, drive, report
from tests.image.conftest import dish_pairs
from tests.support.budget_server import admission
from tests.support.databases import PostgresDatabases, _conninfo, migrate_all, postgres_admin_url
from tests.support.image_server import running_pair

SIZES = (100_000, 1_000_000)
SIZE = "1024x1024"
# Entries per dish (match key): a cache where most dishes have a few images.
PER_DISH = 5
# One popular dish with this many images: the candidate bound (50) at work.
HOT_DISH_ENTRIES = 2_000
REPOSITORY_CALLERS = 4
RPC_CALLERS = 16
SECONDS = 4.0
UNLIMITED = TierLimits(10**15, 10**15, 10**9)

# The canonical JSON the service hashes (cache.cache_key, similarity.match_key),
# written out in SQL: json.dumps(sort_keys=True, separators=(",", ":")).
_KEY_JSON = (
    """'{"model":"%(model)s","prompt":"bench prompt ' || g || '","quality":"medium",'"""
    """ || '"size":"%(size)s"}'"""
)
_MATCH_JSON = (
    """'{"dish":"benchdish ' || (g / %(per_dish)s) || '","foods":[],'"""
    """ || '"model":"%(model)s","size":"%(size)s","v":2,"variant":[]}'"""
)
_CONTEXT_JSON = (
    """'{"dish":"bench dish ' || (g / %(per_dish)s) || '","dish_identity":"benchdish '"""
    """ || (g / %(per_dish)s) || '","cuisine":"unknown","course":"main course",'"""
    """ || '"main_ingredients":["beef","carrot"],"defining_ingredients":["beef","carrot",'"""
    """ || '"onion","potato"],"cooking_method":"braised","complexity":"simple",'"""
    """ || '"dietary_tags":[],"signature_foods":[],"identity_version":2}'"""
)


def _hex(json_sql: str) -> str:
    return f"encode(sha256(convert_to({json_sql}, 'UTF8')), 'hex')"


def _load_sql(first: int, last: int) -> list[str]:
    values = {"model": DEFAULT_MODEL, "size": SIZE, "per_dish": PER_DISH}
    key = _hex(_KEY_JSON % values)
    match = _hex(_MATCH_JSON % values)
    context = "(" + (_CONTEXT_JSON % values) + ")::json"
    series = f"generate_series({first}, {last}) AS g"
    return [
        f"INSERT INTO images (image_id, content_type, size_bytes, created_at) "
        f"SELECT {key}, 'image/png', 1000, now() FROM {series}",
        "INSERT INTO cache_entries (cache_key, model, size, quality, quality_rank, prompt, "
        "context, match_key, image_id, provider, cost_micros, exact_hits, similar_hits, uses, "
        "cost_saved_micros, created_at, expires_at, last_hit_at, invalidated_at) "
        f"SELECT {key}, '{DEFAULT_MODEL}', '{SIZE}', 'medium', 2, 'bench prompt ' || g, "
        f"{context}, {match}, {key}, 'offline', 13170, g % 7, 0, g % 7, (g % 7) * 13170, "
        f"now() - (g % 1000) * interval '1 minute', "
        f"now() + interval '30 days' - (g % 1000) * interval '1 minute', NULL, NULL "
        f"FROM {series}",
    ]


def _bench_context(dish: int | str) -> RecipeContext:
    return RecipeContext(
        dish=f"bench dish {dish}",
        dish_identity=f"benchdish {dish}",
        course="main course",
        main_ingredients=("beef", "carrot"),
        defining_ingredients=("beef", "carrot", "onion", "potato"),
        cooking_method="braised",
        complexity="simple",
    )


def run(baseline: Measurement) -> None:
    databases = PostgresDatabases(postgres_admin_url())
    databases.check_reachable()
    url = databases.create_empty()
    try:
        migrate_all(url)
        _measure(url, baseline)
    finally:
        databases.drop_all()


def _measure(url: str, baseline: Measurement) -> None:
    secret = secrets.token_urlsafe(48)
    authenticator = Authenticator(secret)
    engine = create_db_engine(url, pool_size=REPOSITORY_CALLERS)
    sessions = create_sessions(engine)
    loaded = 0
    # A real recipe whose own images fill one match key: GenerateImage's similar hits.
    recipe = dish_pairs().recipes["491"]
    recipe_context = analyze(recipe)
    try:
        with running_pair(
            url,
            authenticator,
            budget_overrides={
                "tiers": {tier: UNLIMITED for tier in Tier},
                "system_daily_limit_micros": 10**15,
                "system_monthly_limit_micros": 10**15,
                "db_pool_size": 20,
                # Admission on (every hit is admitted first), never refusing.
                "admission": admission(
                    free=TierRates(10**6, 10**6, 0, 0), system=SystemRates(10**6, 10**6, 0, 0)
                ),
            },
            max_workers=32,
            db_pool_size=20,
        ) as pair:
            _load_similar(url, recipe_context)
            service = (
                ("authorization", f"Bearer {authenticator.mint(Role.SERVICE, 'bench', 7200)}"),
            )
            for size in SIZES:
                started = time.perf_counter()
                _load(url, loaded + 1, size)
                loaded = size
                print(
                    f"(cache_entries: {size:,} entries, {PER_DISH} per dish, plus one dish of "
                    f"{HOT_DISH_ENTRIES:,}; loaded and analyzed in "
                    f"{time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
                for measured in _repository(sessions, size):
                    print(_line(measured, baseline), flush=True)
                for measured in _rpc(pair, service, recipe, size):
                    print(_line(measured, baseline), flush=True)
                admin = (
                    ("authorization", f"Bearer {authenticator.mint(Role.ADMIN, 'bench', 600)}"),
                )
                started = time.perf_counter()
                pair.image.GetCacheStats(
                    pb.GetCacheStatsRequest(page_size=100), metadata=admin, timeout=60
                )
                print(
                    f"(GetCacheStats, 100 most used of {size:,}: one call, "
                    f"{(time.perf_counter() - started) * 1000:.0f} ms)",
                    flush=True,
                )
    finally:
        engine.dispose()


def _line(measured: Measurement, baseline: Measurement) -> str:
    return (
        f"{report(measured, baseline)}; latency p50 {measured.p50_ms / baseline.p50_ms:.1f}x, "
        f"p99 {measured.p99_ms / baseline.p99_ms:.1f}x baseline"
    )


# Entries loaded by SQL bypass the totals the service keeps on write (image
# migration 0007): bring the totals row to what the table holds.
_SYNC_TOTALS = (
    "UPDATE cache_totals SET entries_added = purged_entries "
    "+ (SELECT count(*) FROM cache_entries), "
    "exact_hits = (SELECT coalesce(sum(exact_hits), 0) FROM cache_entries), "
    "similar_hits = (SELECT coalesce(sum(similar_hits), 0) FROM cache_entries), "
    "cost_saved_micros = (SELECT coalesce(sum(cost_saved_micros), 0) FROM cache_entries) "
    "WHERE id = 1"
)


def _load(url: str, first: int, last: int) -> None:
    with psycopg.connect(_conninfo(url), autocommit=True) as connection:
        for statement in _load_sql(first, last):
            connection.execute(statement, prepare=False)
        if first == 1:
            hot = [
                statement.replace("(g / 5)", "'hot'")
                for statement in _load_sql(10**9, 10**9 + HOT_DISH_ENTRIES - 1)
            ]
            for statement in hot:
                connection.execute(statement, prepare=False)
        connection.execute(_SYNC_TOTALS)
        connection.execute("VACUUM ANALYZE images")
        connection.execute("VACUUM ANALYZE cache_entries")


def _load_similar(url: str, context: RecipeContext, count: int = 50) -> None:
    """`count` medium images of the recipe's dish under its match key."""
    key = match_key(DEFAULT_MODEL, SIZE, context)
    now = datetime.now(UTC)
    with psycopg.connect(_conninfo(url), autocommit=True) as connection:
        for n in range(count):
            entry_key = cache_key(DEFAULT_MODEL, SIZE, "medium", f"similar bench {n}")
            connection.execute(
                "INSERT INTO images VALUES (%s, 'image/png', 1000, %s)", (entry_key, now)
            )
            connection.execute(
                "INSERT INTO cache_entries (cache_key, model, size, quality, quality_rank, "
                "prompt, context, match_key, image_id, provider, cost_micros, exact_hits, "
                "similar_hits, uses, cost_saved_micros, created_at, expires_at) VALUES "
                "(%s, %s, %s, 'medium', 2, %s, %s, %s, %s, 'offline', 13170, 0, 0, 0, 0, %s, "
                "%s + interval '30 days')",
                (
                    entry_key,
                    DEFAULT_MODEL,
                    SIZE,
                    f"similar bench {n}",
                    json.dumps(context.to_json()),
                    key,
                    entry_key,
                    now,
                    now,
                ),
            )
        connection.execute(_SYNC_TOTALS)


def _repository(sessions, size: int) -> list[Measurement]:  # type: ignore[no-untyped-def]
    rng = random.Random(size)
    medium = quality_rank("medium")

    def exact(_caller: int, _i: int) -> None:
        key = cache_key(DEFAULT_MODEL, SIZE, "medium", f"bench prompt {rng.randint(1, size)}")
        with sessions.begin() as session:
            assert CacheRepository(session).find_live(key, datetime.now(UTC)) is not None

    def miss(_caller: int, i: int) -> None:
        key = cache_key(DEFAULT_MODEL, SIZE, "medium", f"not cached {i}")
        with sessions.begin() as session:
            assert CacheRepository(session).find_live(key, datetime.now(UTC)) is None

    def similar(dish: object):  # type: ignore[no-untyped-def]
        def lookup(_caller: int, _i: int) -> None:
            which = rng.randint(0, size // PER_DISH - 1) if dish is None else dish
            context = _bench_context(which)  # type: ignore[arg-type]
            key = match_key(DEFAULT_MODEL, SIZE, context)
            assert key is not None
            with sessions.begin() as session:
                rows = CacheRepository(session).similar_candidates(key, medium, datetime.now(UTC))
                choice = best_similar(
                    (
                        Candidate(r.id, r.quality_rank, RecipeContext.from_json(r.context), r.id)
                        for r in rows
                    ),
                    context,
                    medium,
                    0.6,
                )
            assert choice is not None

        return lookup

    measured = []
    for name, call in (
        ("exact hit", exact),
        ("exact miss", miss),
        (f"similar, {PER_DISH} cand.", similar(None)),
        ("similar, 50 of 2000 cand.", similar("hot")),
    ):
        call(0, -1)
        measured.append(
            drive(
                f"repo {name}, {size // 1000:,}k entries",
                call,
                callers=REPOSITORY_CALLERS,
                seconds=SECONDS,
            )
        )
    return measured


def _rpc(pair, service, recipe, size: int) -> list[Measurement]:  # type: ignore[no-untyped-def]
    rng = random.Random(-size)
    from tests.image.conftest import proto_recipe

    similar_request = pb.GenerateImageRequest(
        user_id="bench-similar",
        recipe=proto_recipe(recipe),
        quality=image_quality_pb2.IMAGE_QUALITY_LOW,
        allow_similar=True,
    )

    def exact(caller: int, _i: int) -> None:
        reply = pair.image.GenerateImage(
            pb.GenerateImageRequest(
                user_id=f"bench-{caller}", prompt=f"bench prompt {rng.randint(1, size)}"
            ),
            metadata=service,
            timeout=30,
        )
        assert reply.source == pb.IMAGE_SOURCE_CACHE_EXACT

    def similar(_caller: int, _i: int) -> None:
        reply = pair.image.GenerateImage(similar_request, metadata=service, timeout=30)
        assert reply.source == pb.IMAGE_SOURCE_CACHE_SIMILAR

    measured = []
    for name, call in (("exact hit", exact), ("similar hit", similar)):
        call(0, -1)
        measured.append(
            drive(
                f"GenerateImage {name}, {size // 1000:,}k, {RPC_CALLERS} call.",
                call,
                callers=RPC_CALLERS,
                seconds=SECONDS,
            )
        )
    return measured
