"""AnalyzeCostOptimization's per-record figures (dish seen before, repeats,
images never served again, retries) equal a direct computation over the
ledger's records in Python, on random traffic of several users at random
instants (records arriving out of order, amended records), random ranges,
for one user and for every user, SQLite and PostgreSQL; the dish first
generations table (migration 0016) equals the ledger's earliest successful
generation of each dish and quality, and ReconcileLedger reports a
corrupted row of it."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from recipeimage.budget.v1 import budget_service_pb2 as pb
from sqlalchemy import delete, func, select, update

from services.budget.domain.optimization import QUALITY_RANKS, CachingFacts
from services.budget.domain.usage import Outcome, Usage, UsageKind
from services.budget.store.models import DishFirstRow, UsageRow
from services.budget.store.optimization import _record_figures
from services.budget.store.unit_of_work import BudgetStore
from tests.budget.conftest import T0
from tests.budget.test_optimization import put

QUALITIES = ("low", "medium", "high", "hd")
DISHES = ("d" * 63 + "1", "d" * 63 + "2", "d" * 63 + "3")
RETRIED_AFTER = {"failed", "fallback", "abandoned", "refused"}
OUTCOMES = (
    *(Outcome.GENERATED,) * 6,
    Outcome.CACHE_HIT_EXACT,
    Outcome.CACHE_HIT_SIMILAR,
    Outcome.FAILED,
    Outcome.FALLBACK,
    Outcome.REFUSED,
)


def _rank(quality: str) -> int:
    return QUALITY_RANKS.get(quality, 0)


def _random_traffic(budget, rng: random.Random, origin: datetime, seconds: int) -> None:  # type: ignore[no-untyped-def]
    """Random records in random order of instants (so some arrive after a
    later one), a few dish recognitions, and abandoned records settled."""
    for n in range(260):
        outcome = rng.choice(OUTCOMES)
        hit = outcome.cache_hit != ""
        put(
            budget,
            f"u{n % 4}",
            origin + timedelta(seconds=rng.randrange(seconds)),
            outcome,
            recipe_id=rng.choice(("", "r1", "r2", "r3", "r4")),
            quality=rng.choice(QUALITIES),
            dish_key=rng.choice(("", *DISHES)),
            similar_allowed=rng.random() < 0.4,
            image_id=f"img-{rng.randrange(40)}" if outcome is Outcome.GENERATED or hit else "",
            cost_micros=rng.randrange(0, 90_000),
            success=outcome.served_image and rng.random() < 0.9,
            kind=UsageKind.DISH_RECOGNITION if n % 23 == 0 else UsageKind.IMAGE,
        )
    for n in range(6):
        at = origin + timedelta(seconds=rng.randrange(seconds))
        base = {"request_id": f"late-{n}", "user_id": f"u{n % 2}", "created_at": at}
        fields = {"recipe_id": "r1", "quality": rng.choice(QUALITIES), "dish_key": DISHES[n % 3]}
        with BudgetStore(budget.app.sessions).transaction() as tx:
            assert tx.usage.store_usage(Usage(outcome=Outcome.ABANDONED, **base, **fields))
        outcome = rng.choice((Outcome.GENERATED, Outcome.FAILED))
        settled = Usage(
            outcome=outcome,
            success=outcome is Outcome.GENERATED,
            cost_micros=rng.randrange(1_000, 90_000),
            image_id=f"late-img-{n}",
            **base,
            **fields,
        )
        with BudgetStore(budget.app.sessions).transaction() as tx:
            assert tx.usage.amend_abandoned(settled)


def _records(budget) -> list[Any]:  # type: ignore[no-untyped-def]
    u = UsageRow
    with budget.app.sessions.begin() as session:
        return list(
            session.execute(
                select(
                    u.id,
                    u.user_id,
                    u.created_at,
                    u.outcome,
                    u.success,
                    u.recipe_id,
                    u.dish_key,
                    u.similar_allowed,
                    u.quality,
                    u.image_id,
                    u.cached,
                    u.cost_micros,
                    u.kind,
                )
            ).all()
        )


def _expected(
    records: list[Any], user_id: str | None, start: datetime, end: datetime
) -> tuple[CachingFacts, tuple[int, int], tuple[int, int]]:
    """The figures by their definitions (README, "How the optimization
    figures are computed"), record by record."""
    ordered = sorted(records, key=lambda r: (r.created_at, r.id))
    scoped = [r for r in ordered if start <= r.created_at < end and user_id in (None, r.user_id)]
    served = {r.image_id for r in records if r.cached and r.image_id}
    seen: dict[tuple[str, str], int] = defaultdict(int)
    dish = repeat = both = unserved = (0, 0)
    repeated: set[str] = set()

    def plus(figure: tuple[int, int], cost: int) -> tuple[int, int]:
        return figure[0] + 1, figure[1] + cost

    for r in scoped:
        if r.outcome != "generated" or r.kind not in (None, "image"):
            continue
        seen[(r.user_id, r.recipe_id)] += 1
        is_repeat = r.recipe_id != "" and seen[(r.user_id, r.recipe_id)] > 1
        is_dish = (
            r.similar_allowed is False
            and r.dish_key is not None
            and any(
                e.dish_key == r.dish_key
                and e.created_at < r.created_at
                and e.outcome == "generated"
                and e.success
                and _rank(e.quality) >= _rank(r.quality)
                for e in records
            )
        )
        if is_dish:
            dish = plus(dish, r.cost_micros)
        if is_repeat:
            repeat = plus(repeat, r.cost_micros)
            repeated.add(r.recipe_id)
        if is_dish or is_repeat:
            both = plus(both, r.cost_micros)
        if r.image_id is not None and r.image_id not in served:
            unserved = plus(unserved, r.cost_micros)
    retries = (0, 0)
    before: dict[tuple[str, str], str] = {}
    for r in scoped:
        if r.recipe_id == "":
            continue
        if before.get((r.user_id, r.recipe_id)) in RETRIED_AFTER:
            retries = plus(retries, r.cost_micros)
        before[(r.user_id, r.recipe_id)] = r.outcome
    caching = CachingFacts(*dish, len(repeated), *repeat, *both)
    return caching, unserved, retries


def test_the_per_record_figures_equal_the_ledgers(budget) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(18)
    origin = T0 - timedelta(days=20)
    seconds = 20 * 24 * 3600
    _random_traffic(budget, rng, origin, seconds)
    records = _records(budget)
    spans = [(origin, origin + timedelta(seconds=seconds))] + [
        sorted(origin + timedelta(seconds=rng.randrange(seconds)) for _ in range(2))
        for _ in range(10)
    ]
    checked = 0
    for start, end in spans:
        for user_id in (None, "u0", "u1", "u3"):
            caching, unserved, retries = _expected(records, user_id, start, end)
            with budget.app.sessions.begin() as session:
                fast_caching, waste = _record_figures(session, user_id, start, end)
            assert fast_caching == caching, (user_id, start, end)
            assert (waste.unserved_generations, waste.unserved_cost_micros) == unserved
            assert (waste.retries, waste.retry_cost_micros) == retries, (user_id, start, end)
            checked += caching.similar_off_dish_cached + caching.repeated_generations
    assert checked > 0  # the traffic has figures to compare


def test_the_dish_first_generations_equal_the_ledgers(budget) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(180)
    _random_traffic(budget, rng, T0 - timedelta(days=3), 3 * 24 * 3600)
    u = UsageRow
    with budget.app.sessions.begin() as session:
        ledger = session.execute(
            select(u.dish_key, u.quality, func.min(u.created_at))
            .where(u.outcome == "generated", u.success.is_(True), u.dish_key.is_not(None))
            .group_by(u.dish_key, u.quality)
        ).all()
        rolled = session.execute(
            select(DishFirstRow.dish_key, DishFirstRow.quality, DishFirstRow.first_at)
        ).all()
    assert len(ledger) > 3
    assert sorted(map(tuple, rolled)) == sorted(map(tuple, ledger))


def _dish_differences(budget, tokens) -> list[str]:  # type: ignore[no-untyped-def]
    result = budget.stub.ReconcileLedger(pb.ReconcileLedgerRequest(), metadata=tokens.admin())
    return [d.description for d in result.differences if d.field == "dish_first_generations"]


def test_reconciliation_reports_a_wrong_or_missing_dish_first_generation(budget, tokens) -> None:  # type: ignore[no-untyped-def]
    put(budget, "u1", T0 - timedelta(hours=3), Outcome.GENERATED, dish_key=DISHES[0])
    put(budget, "u2", T0 - timedelta(hours=5), Outcome.GENERATED, dish_key=DISHES[1])
    assert _dish_differences(budget, tokens) == []
    with budget.app.sessions.begin() as session:
        # An hour too early (stored as the triggers store instants), and gone.
        session.execute(
            update(DishFirstRow)
            .where(DishFirstRow.dish_key == DISHES[0])
            .values(first_at=T0 - timedelta(hours=4))
        )
        session.execute(delete(DishFirstRow).where(DishFirstRow.dish_key == DISHES[1]))
    found = _dish_differences(budget, tokens)
    assert len(found) == 2
    assert any(DISHES[0] in d for d in found) and any(DISHES[1] in d for d in found)
