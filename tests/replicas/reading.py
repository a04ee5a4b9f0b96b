"""Reading the shared database directly, as the tests' own observer."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Select, func, select

from services.budget.store.models import ReservationRow, UsageRow
from services.common.db import create_db_engine, create_sessions
from services.image.store.models import PendingSettlement

# A cache hit's usage record reaches the ledger through ImageService's outbox
# (sent in batches a moment after the hit is answered): a row still on its
# first attempt is one no sender has dealt with yet.
UNSENT_RECORDS = (
    select(func.count())
    .select_from(PendingSettlement)
    .where(
        PendingSettlement.kind == "record",
        PendingSettlement.last_error == "",
        PendingSettlement.abandoned_at.is_(None),
    )
)


def fetch(database_url: str, statement: Select[Any]) -> list[Any]:
    engine = create_db_engine(database_url, pool_size=1)
    try:
        with create_sessions(engine).begin() as session:
            return list(session.execute(statement).all())
    finally:
        engine.dispose()


def wait_until_hit_records_sent(database_url: str, timeout: float = 30.0) -> None:
    """Bounded wait until every replica's sender has dealt with the hits'
    records in the shared outbox (both services share the test database)."""
    deadline = time.monotonic() + timeout
    while fetch(database_url, UNSENT_RECORDS)[0][0] and time.monotonic() < deadline:
        time.sleep(0.05)


def ledger(database_url: str) -> list[tuple[str, str, str, int]]:
    """(request id, user, outcome, cost) of every usage record, oldest first,
    once the cache hits' records answered so far have left the outbox."""
    wait_until_hit_records_sent(database_url)
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
