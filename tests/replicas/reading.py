"""Reading the shared database directly, as the tests' own observer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from services.budget.store.models import ReservationRow, UsageRow
from services.common.db import create_db_engine, create_sessions


def fetch(database_url: str, statement: Select[Any]) -> list[Any]:
    engine = create_db_engine(database_url, pool_size=1)
    try:
        with create_sessions(engine).begin() as session:
            return list(session.execute(statement).all())
    finally:
        engine.dispose()


def ledger(database_url: str) -> list[tuple[str, str, str, int]]:
    """(request id, user, outcome, cost) of every usage record, oldest first."""
    rows = fetch(
        database_url,
        select(
            UsageRow.request_id, UsageRow.user_id, UsageRow.outcome, UsageRow.cost_micros
        ).order_by(UsageRow.id),
    )
    return [(r[0], r[1], r[2], int(r[3])) for r in rows]


def reservations(database_url: str) -> list[tuple[str, str, str]]:
    """(idempotency key, user, state) of every reservation, oldest first."""
    rows = fetch(
        database_url,
        select(
            ReservationRow.idempotency_key, ReservationRow.user_id, ReservationRow.state
        ).order_by(ReservationRow.created_at),
    )
    return [(r[0], r[1], r[2]) for r in rows]
