"""ExportUsage's reads: keyset chunks of the ledger in ascending id, over
the primary key (all users) or the (user_id, id) index (one user); never
OFFSET, so every chunk costs the same however far the export has come."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.budget.domain.export import ExportedRecord, ExportRange
from services.budget.store.models import UsageRow
from services.budget.store.usage import usage_of_row


class ExportQueries:
    def __init__(self, session: Session) -> None:
        self.session = session

    def load_chunk(self, span: ExportRange, after_id: int, limit: int) -> list[ExportedRecord]:
        """Up to limit records of the range with an id above after_id, in id order."""
        statement = select(UsageRow).where(UsageRow.id > after_id)
        if span.user_id:
            statement = statement.where(UsageRow.user_id == span.user_id)
        if span.start is not None:
            statement = statement.where(UsageRow.created_at >= span.start)
        if span.end is not None:
            statement = statement.where(UsageRow.created_at < span.end)
        statement = statement.order_by(UsageRow.id).limit(limit)
        return [
            ExportedRecord(row.id, usage_of_row(row)) for row in self.session.scalars(statement)
        ]
