"""ExportUsage: the ledger's records (one user's or all, in a time range) in
ascending id, as messages that each carry a cursor to resume after them.

Each chunk is read in a short transaction of its own, so a long export holds
no snapshot or lock; the export reads what is committed as it goes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime

from services.budget.domain.export import (
    CHUNK_ROWS,
    ExportMessage,
    ExportRange,
    message_parts,
)
from services.budget.domain.validation import Violations
from services.budget.store.unit_of_work import BudgetStore
from services.common.paging import PageTokens


def _after_id(position: Mapping[str, object]) -> int:
    return int(str(position["i"]))


class Export:
    def __init__(
        self, store: BudgetStore, tokens: PageTokens, chunk_rows: int = CHUNK_ROWS
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._chunk_rows = chunk_rows

    def open(
        self,
        user_id: str,
        start: datetime | None,
        end: datetime | None,
        cursor: str,
        violations: Violations,
    ) -> Iterator[ExportMessage]:
        """Check the request now (a bad one streams nothing), then the
        messages, read as they are consumed."""
        if start is not None and end is not None and end <= start:
            violations.add("end_time", "must be after start_time")
        span = ExportRange(user_id, start, end)
        query = {"export": user_id, "start": start, "end": end}
        position = self._tokens.decode(violations, cursor, query, field="cursor")
        after = 0
        if position is not None:
            try:
                after = _after_id(position)
            except (KeyError, ValueError):
                violations.add("cursor", "not a cursor this service issued")
        violations.raise_if_any()
        return self._messages(span, after, query)

    def _messages(
        self, span: ExportRange, after: int, query: Mapping[str, object]
    ) -> Iterator[ExportMessage]:
        while True:
            with self._store.transaction() as tx:
                records = tx.export.load_chunk(span, after, self._chunk_rows)
            for part in message_parts(records):
                after = part[-1].id
                yield ExportMessage(part, self._tokens.encode({"i": after}, query))
            if len(records) < self._chunk_rows:
                return
