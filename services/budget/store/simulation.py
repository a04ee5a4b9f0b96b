"""SimulateLimits' read: the ledger's records of a range in time order with
each user's stored settings, streamed (a server-side cursor on PostgreSQL,
SQLite's own stepping), so the replay never holds the range in memory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.budget.domain.limits import LimitValues, Tier
from services.budget.domain.simulation import ReplayedRecord
from services.budget.store.models import UsageRow, UserRow, table

USAGE = table(UsageRow)
USERS = table(UserRow)
# Rows fetched from the server-side cursor at a time.
STREAM_ROWS = 2000


class SimulationQueries:
    def __init__(self, session: Session) -> None:
        self.session = session

    def stream_records(
        self, start: datetime, end: datetime, default_tier: Tier
    ) -> Iterator[ReplayedRecord]:
        """The records created in [start, end), by (created_at, id)."""
        u = USERS.c
        statement = (
            select(
                USAGE.c.user_id,
                USAGE.c.created_at,
                USAGE.c.cost_micros,
                u.tier,
                u.override_daily_micros,
                u.override_monthly_micros,
                u.override_per_generation_micros,
                u.cap_daily_micros,
                u.cap_monthly_micros,
                u.cap_per_generation_micros,
            )
            .select_from(USAGE.outerjoin(USERS, u.user_id == USAGE.c.user_id))
            .where(USAGE.c.created_at >= start, USAGE.c.created_at < end)
            .order_by(USAGE.c.created_at, USAGE.c.id)
            .execution_options(yield_per=STREAM_ROWS)
        )
        for row in self.session.execute(statement):
            yield ReplayedRecord(
                user_id=row.user_id,
                created_at=row.created_at,
                cost_micros=int(row.cost_micros),
                tier=Tier(row.tier) if row.tier else default_tier,
                overrides=LimitValues(
                    row.override_daily_micros,
                    row.override_monthly_micros,
                    row.override_per_generation_micros,
                ),
                cap=LimitValues(
                    row.cap_daily_micros, row.cap_monthly_micros, row.cap_per_generation_micros
                ),
            )
