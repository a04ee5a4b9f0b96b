"""AnalyzeCostOptimization's rolled-up reads equal a direct computation over
the ledger, on random records at random instants and random ranges (whole
days, whole hours and the partial hours at the edges), SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import timedelta

from recipeimage.budget.v1 import budget_service_pb2 as pb
from sqlalchemy import func, select, text

from services.budget.domain.optimization import PromptGroup
from services.budget.domain.usage import Outcome, Usage
from services.budget.store.models import UsageRow
from services.budget.store.optimization import load_system_hits
from services.budget.store.optimization_prompts import load_prompt_groups
from services.budget.store.unit_of_work import BudgetStore
from tests.budget.conftest import T0
from tests.budget.test_optimization import put

OUTCOMES = list(Outcome)


def _ledger_hits(budget, start, end) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    u = UsageRow
    in_range = (u.created_at >= start, u.created_at < end)
    with budget.app.sessions.begin() as session:
        hits = session.scalar(
            select(func.count()).where(*in_range, u.cache_hit.in_(("exact", "similar")))
        )
        generated = session.scalar(
            select(func.count()).where(*in_range, u.outcome == Outcome.GENERATED.value)
        )
    return int(hits or 0), int(generated or 0)


def test_the_system_hit_counts_equal_the_ledgers(budget) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(11)
    origin = T0 - timedelta(days=3)
    for n in range(160):
        outcome = rng.choice(OUTCOMES)
        at = origin + timedelta(seconds=rng.randrange(4 * 24 * 3600))
        # A caller may flag a record cached without naming the kind of hit.
        odd = {"cached": True, "cache_hit": ""} if n % 17 == 0 else {}
        put(budget, f"u{n % 5}", at, outcome, recipe_id=f"r{n % 7}", **odd)
    spans = [(origin, origin + timedelta(days=4))] + [
        sorted(origin + timedelta(seconds=rng.randrange(4 * 24 * 3600)) for _ in range(2))
        for _ in range(12)
    ]
    for start, end in spans:
        with budget.app.sessions.begin() as session:
            fast = load_system_hits(session, start, end)
        assert fast == _ledger_hits(budget, start, end), (start, end)


def _ledger_prompts(budget, user_id, start, end) -> list[PromptGroup]:  # type: ignore[no-untyped-def]
    u = UsageRow
    statement = (
        select(
            u.model,
            u.custom_prompt,
            func.count(),
            func.sum(u.input_tokens),
            func.sum(u.cost_micros),
        )
        .where(
            u.created_at >= start,
            u.created_at < end,
            u.outcome == Outcome.GENERATED.value,
            u.custom_prompt.is_not(None),
        )
        .group_by(u.model, u.custom_prompt)
        .order_by(u.model, u.custom_prompt)
    )
    if user_id is not None:
        statement = statement.where(u.user_id == user_id)
    with budget.app.sessions.begin() as session:
        return [
            PromptGroup(row[0], bool(row[1]), int(row[2]), int(row[3]), int(row[4]))
            for row in session.execute(statement)
        ]


def _settle_abandoned(budget, user_id: str, at, custom: bool) -> None:  # type: ignore[no-untyped-def]
    """An abandoned record (the reaper's) amended by the attempt's late commit."""
    request_id = f"late-{at.timestamp()}"
    base = {"request_id": request_id, "user_id": user_id, "created_at": at, "model": "gpt-image-2"}
    with BudgetStore(budget.app.sessions).transaction() as tx:
        assert tx.usage.store_usage(Usage(outcome=Outcome.ABANDONED, **base))
    settled = Usage(
        outcome=Outcome.GENERATED,
        success=True,
        custom_prompt=custom,
        input_tokens=77,
        cost_micros=9_000,
        size="1024x1024",
        quality="low",
        **base,
    )
    with BudgetStore(budget.app.sessions).transaction() as tx:
        assert tx.usage.amend_abandoned(settled)


def test_the_prompt_groups_equal_the_ledgers(budget) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(13)
    origin = T0 - timedelta(days=3)
    models = ("gpt-image-2", "gpt-image-1.5")
    for n in range(200):
        at = origin + timedelta(seconds=rng.randrange(4 * 24 * 3600))
        outcome = Outcome.GENERATED if n % 3 else rng.choice(OUTCOMES)
        put(
            budget,
            f"u{n % 3}",
            at,
            outcome,
            model=rng.choice(models),
            custom_prompt=rng.choice((None, False, True)),
            input_tokens=rng.randrange(10, 500),
            cost_micros=rng.randrange(1_000, 90_000),
        )
    for n in range(6):
        at = origin + timedelta(seconds=rng.randrange(4 * 24 * 3600))
        _settle_abandoned(budget, f"u{n % 3}", at, custom=bool(n % 2))
    spans = [(origin, origin + timedelta(days=4))] + [
        sorted(origin + timedelta(seconds=rng.randrange(4 * 24 * 3600)) for _ in range(2))
        for _ in range(12)
    ]
    for start, end in spans:
        for user_id in (None, "u0", "u1"):
            with budget.app.sessions.begin() as session:
                fast = load_prompt_groups(session, user_id, start, end)
            assert fast == _ledger_prompts(budget, user_id, start, end), (user_id, start, end)


def _prompt_differences(budget, tokens) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    result = budget.stub.ReconcileLedger(pb.ReconcileLedgerRequest(), metadata=tokens.admin())
    return sorted(
        (d.field, d.user_id) for d in result.differences if d.field.endswith("prompts_rollup")
    )


def test_reconciliation_reports_a_corrupted_prompt_rollup_row(budget, tokens) -> None:  # type: ignore[no-untyped-def]
    for n, custom in enumerate((False, True, True)):
        at = T0 - timedelta(hours=5 * n)
        put(budget, "u1", at, Outcome.GENERATED, custom_prompt=custom, cost_micros=5_000)
    _settle_abandoned(budget, "u2", T0 - timedelta(hours=30), custom=False)
    assert _prompt_differences(budget, tokens) == []
    with budget.app.sessions.begin() as session:
        session.execute(
            text(
                "UPDATE budget_user_prompts SET input_tokens = input_tokens + 1 "
                "WHERE user_id = 'u1' AND custom = 1"
            )
        )
        session.execute(
            text("DELETE FROM budget_system_prompts WHERE kind = 'hour' AND custom = 0")
        )
    assert _prompt_differences(budget, tokens) == [
        ("system_prompts_rollup", ""),
        ("system_prompts_rollup", ""),
        ("user_prompts_rollup", "u1"),
    ]
