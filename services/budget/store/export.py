"""ExportUsage's reads: keyset chunks of the ledger in ascending id, over
the primary key (all users) or the (user_id, id) index (one user); never
OFFSET, so every chunk costs the same however far the export has come.
Core rows, not ORM objects: the export reads millions of them."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from services.budget.domain.export import ExportedRecord, ExportRange
from services.budget.domain.usage import Outcome, Usage, UsageKind
from services.budget.store.models import UsageRow, table

USAGE = table(UsageRow)
_FIELDS = tuple(
    name for name in Usage.__dataclass_fields__ if name not in ("outcome", "reservation_id", "kind")
)
_OUTCOMES = {outcome.value: outcome for outcome in Outcome}


@functools.cache
def _chunk(by_user: bool, from_start: bool, to_end: bool) -> Select[Any]:
    """The keyset statement of a range's shape (built once per shape)."""
    statement = select(
        USAGE.c.id, USAGE.c.outcome, USAGE.c.reservation_id, USAGE.c.kind
    ).add_columns(*(USAGE.c[name] for name in _FIELDS))
    statement = statement.where(USAGE.c.id > bindparam("after"))
    if by_user:
        statement = statement.where(USAGE.c.user_id == bindparam("user_id"))
    if from_start:
        statement = statement.where(USAGE.c.created_at >= bindparam("start"))
    if to_end:
        statement = statement.where(USAGE.c.created_at < bindparam("end"))
    return statement.order_by(USAGE.c.id).limit(bindparam("limit"))


class ExportQueries:
    def __init__(self, session: Session) -> None:
        self.session = session

    def load_chunk(self, span: ExportRange, after_id: int, limit: int) -> list[ExportedRecord]:
        """Up to limit records of the range with an id above after_id, in id order."""
        statement = _chunk(bool(span.user_id), span.start is not None, span.end is not None)
        params = {
            "after": after_id,
            "user_id": span.user_id,
            "start": span.start,
            "end": span.end,
            "limit": limit,
        }
        rows = self.session.execute(statement, params).all()
        return [
            ExportedRecord(
                row[0],
                Usage(
                    **dict(zip(_FIELDS, row[4:], strict=True)),
                    outcome=_OUTCOMES[row[1]],
                    reservation_id=row[2] or "",
                    # NULL before migration 0014: an image.
                    kind=UsageKind(row[3] or UsageKind.IMAGE),
                ),
            )
            for row in rows
        ]
