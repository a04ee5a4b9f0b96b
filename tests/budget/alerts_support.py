"""Helpers of the alert tests: spend through real reservations, read alerts
through ListAlerts, and write ledger rows of past days for the evaluator."""

from __future__ import annotations

from datetime import datetime
from itertools import count

from recipeimage.budget.v1 import alerts_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.store.models import UsageRow

_keys = count()


def reserve(budget, tokens, amount: int, user: str = "u1") -> str:  # type: ignore[no-untyped-def]
    held = budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(
            user_id=user, amount_micros=amount, idempotency_key=f"attempt-{next(_keys)}"
        ),
        metadata=tokens.service(),
    )
    return str(held.reservation.reservation_id)


def commit(budget, tokens, reservation_id: str, cost: int) -> None:  # type: ignore[no-untyped-def]
    budget.stub.CommitReservation(
        pb.CommitReservationRequest(
            reservation_id=reservation_id,
            actual_cost_micros=cost,
            usage=pb.UsageRecord(
                recipe_id="recipe-1",
                prompt="A bowl of soup",
                size="1024x1024",
                model="gpt-image-1.5",
                provider="openai",
            ),
        ),
        metadata=tokens.service(),
    )


def spend(budget, tokens, cost: int, user: str = "u1") -> None:  # type: ignore[no-untyped-def]
    commit(budget, tokens, reserve(budget, tokens, cost, user), cost)


def alerts(budget, metadata, **request: object) -> list[apb.Alert]:  # type: ignore[no-untyped-def]
    """Every alert ListAlerts returns, newest first, over all pages."""
    found: list[apb.Alert] = []
    token = ""
    while True:
        page = budget.stub.ListAlerts(
            apb.ListAlertsRequest(page_token=token, page_size=2, **request), metadata=metadata
        )
        found += page.alerts
        token = page.next_page_token
        if not token:
            return found


def rules_of(found: list[apb.Alert]) -> list[tuple[str, str]]:
    return [(a.rule, a.user_id or "system") for a in found]


def usage_row(
    user: str,
    at: datetime,
    *,
    outcome: str = "generated",
    cost: int = 0,
    error: str = "",
) -> UsageRow:
    """A ledger record (the rollup's trigger counts it), for figures of past days."""
    cached = outcome.startswith("cache_hit")
    return UsageRow(
        request_id=f"r-{next(_keys)}",
        user_id=user,
        recipe_id="recipe-1",
        prompt="A bowl of soup",
        prompt_length=14,
        size="1024x1024",
        quality="medium",
        model="gpt-image-1.5",
        provider="openai",
        cost_micros=cost,
        success=outcome in ("generated", "cache_hit_exact", "cache_hit_similar"),
        error_message=error,
        fallback_used=False,
        generation_time_ms=1000,
        cached=cached,
        cache_hit="exact" if cached else "",
        outcome=outcome,
        cost_saved_micros=0,
        input_tokens=0,
        output_tokens=0,
        created_at=at,
    )
