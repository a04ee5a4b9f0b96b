"""SimulateLimits' read: the ledger's records of a range in time order with
each user's stored settings, streamed (a server-side cursor on PostgreSQL,
SQLite's own stepping), so the replay never holds the range in memory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.budget.domain.limits import Tier
from services.budget.domain.simulation import ReplayedRecord
from services.budget.store.limits import USER_COLUMNS, USERS, user_settings_of
from services.budget.store.models import UsageRow, table

USAGE = table(UsageRow)
# Rows fetched from the server-side cursor at a time.
STREAM_ROWS = 2000


class SimulationQueries:
    def __init__(self, session: Session) -> None:
        self.session = session

    def stream_records(
        self, start: datetime, end: datetime, default_tier: Tier
    ) -> Iterator[ReplayedRecord]:
        """The records created in [start, end), by (created_at, id)."""
        statement = (
            select(USAGE.c.user_id, USAGE.c.created_at, USAGE.c.cost_micros, *USER_COLUMNS)
            .select_from(USAGE.outerjoin(USERS, USERS.c.user_id == USAGE.c.user_id))
            .where(USAGE.c.created_at >= start, USAGE.c.created_at < end)
            .order_by(USAGE.c.created_at, USAGE.c.id)
            .execution_options(yield_per=STREAM_ROWS)
        )
        for row in self.session.execute(statement):
            # A user with nothing stored has NULLs here: the default settings.
            settings = user_settings_of(row.user_id, row)
            yield ReplayedRecord(
                user_id=row.user_id,
                created_at=row.created_at,
                cost_micros=int(row.cost_micros),
                tier=settings.tier or default_tier,
                overrides=settings.overrides,
                cap=settings.cap,
            )
