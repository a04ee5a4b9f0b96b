"""ExportUsage: the ledger's records in ascending id, in chunks that each end
with a cursor. Plain Python.

A cursor is the id of the last record sent (signed, bound to the request's
user and range): resuming after it sends the next record and never one
already sent, since ids only grow and the ledger is append-only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from services.budget.domain.usage import Usage

# Records read from the database at once (one keyset query each).
CHUNK_ROWS = 1000
# A message holds at most this many records and about this much text, well
# below gRPC's 4 MB message limit (a prompt may hold 32,000 characters).
MESSAGE_RECORDS = 500
MESSAGE_CHARS = 1_000_000
# What a record's fields other than its prompt and error message take, about.
_RECORD_OVERHEAD_CHARS = 300


@dataclass(frozen=True)
class ExportRange:
    """One user's records (all users': user_id "") created in [start, end)
    (an unset bound: no bound)."""

    user_id: str
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class ExportedRecord:
    id: int
    usage: Usage


@dataclass(frozen=True)
class ExportMessage:
    records: list[ExportedRecord]
    # Resumes after the last of records.
    cursor: str


def _chars(record: ExportedRecord) -> int:
    return len(record.usage.prompt) + len(record.usage.error_message) + _RECORD_OVERHEAD_CHARS


def message_parts(records: list[ExportedRecord]) -> Iterator[list[ExportedRecord]]:
    """records (in order) cut into messages of at most MESSAGE_RECORDS records
    and, but for a single record, MESSAGE_CHARS characters."""
    part: list[ExportedRecord] = []
    size = 0
    for record in records:
        chars = _chars(record)
        if part and (len(part) == MESSAGE_RECORDS or size + chars > MESSAGE_CHARS):
            yield part
            part, size = [], 0
        part.append(record)
        size += chars
    if part:
        yield part
