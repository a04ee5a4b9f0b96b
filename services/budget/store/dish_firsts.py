"""Reconciliation of budget_dish_first_generations (migration 0016): each
(dish, quality)'s first_at against the ledger's earliest successful
generation of it, any user's. A first_at depends on the whole history of
its dish, so the ledger side is aggregated over all of it; since only
narrows which differences are reported (either instant on or after it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, literal, or_, select, true, union_all
from sqlalchemy.orm import Session

from services.budget.domain.reconciliation import Difference
from services.budget.domain.usage import Outcome
from services.budget.store.models import DishFirstRow, UsageRow, table

USAGE = table(UsageRow)
FIRSTS = table(DishFirstRow)
FIELD = "dish_first_generations"


def _mismatches(session: Session, since: datetime | None, limit: int) -> list[Any]:
    """(dish_key, quality, rolled first_at or None, ledger first_at or None)
    of every pair where the table and the ledger differ."""
    u = USAGE.c
    ledger = (
        select(u.dish_key, u.quality, func.min(u.created_at).label("first_at"))
        .where(u.outcome == Outcome.GENERATED.value, u.success.is_(True), u.dish_key.is_not(None))
        .group_by(u.dish_key, u.quality)
        .subquery("ledger")
    )
    rolled = FIRSTS
    same = and_(ledger.c.dish_key == rolled.c.dish_key, ledger.c.quality == rolled.c.quality)

    def recent(*instants: Any) -> Any:
        """Either instant on or after since (always, without since)."""
        return true() if since is None else or_(*(i >= since for i in instants))

    wrong = (
        select(
            rolled.c.dish_key,
            rolled.c.quality,
            rolled.c.first_at.label("rolled"),
            ledger.c.first_at.label("ledger"),
        )
        .select_from(rolled.outerjoin(ledger, same))
        .where(
            or_(ledger.c.first_at.is_(None), ledger.c.first_at != rolled.c.first_at),
            recent(rolled.c.first_at, func.coalesce(ledger.c.first_at, rolled.c.first_at)),
        )
    )
    missing = select(
        ledger.c.dish_key,
        ledger.c.quality,
        literal(None, FIRSTS.c.first_at.type).label("rolled"),
        ledger.c.first_at.label("ledger"),
    ).where(~exists(select(rolled.c.dish_key).where(same)), recent(ledger.c.first_at))
    return list(session.execute(union_all(wrong, missing).limit(limit)).all())


def dish_first_differences(
    session: Session, since: datetime | None, limit: int
) -> list[Difference]:
    return [
        Difference(
            field=FIELD,
            counter_micros=0,
            ledger_micros=0,
            description=(
                f"{FIRSTS.name} of dish {row.dish_key} at {row.quality}: first generated at "
                f"{row.rolled or 'none'}, the ledger's earliest {row.ledger or 'none'}"
            ),
        )
        for row in _mismatches(session, since, limit)
    ]
