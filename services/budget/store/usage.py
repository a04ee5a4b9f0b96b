"""The usage ledger: appending records (once per request_id), reading one
back, and the keyset pages of ListUsage.

Every read is bounded to one user and one time range, which is exactly the
leading (user_id, created_at, id) of the ledger's index; on PostgreSQL the
index also carries the aggregated columns, so stats are an index-only scan of
that user's range, however large the ledger grows (usage_summary).
"""

from __future__ import annotations

import functools
from datetime import datetime

from sqlalchemy import Executable, literal, select, tuple_, update
from sqlalchemy.orm import Session

from services.budget.domain.abuse import fingerprint_of
from services.budget.domain.usage import Cursor, Outcome, Usage, UsageKind, UsageSummary
from services.budget.store.models import AutoId, UsageRow, insert_or_skip, table
from services.budget.store.usage_summary import load_usage_summary
from services.common.db import UtcDateTime

_USAGE_FIELDS = (
    "request_id",
    "user_id",
    "recipe_id",
    "prompt",
    "prompt_length",
    "size",
    "quality",
    "model",
    "provider",
    "cost_micros",
    "success",
    "error_message",
    "fallback_used",
    "generation_time_ms",
    "cached",
    "cache_hit",
    "cost_saved_micros",
    "input_tokens",
    "output_tokens",
    "created_at",
    "similar_allowed",
    "custom_prompt",
)
# Kept as NULL when empty (the partial indexes skip them).
_OPTIONAL_KEYS = ("dish_key", "image_id")


@functools.cache
def _insert_usage(dialect: str) -> Executable:
    """Executed with every column as a parameter; RETURNING nothing on a conflict."""
    usage = table(UsageRow)
    return insert_or_skip(dialect, usage, usage.c.user_id, usage.c.request_id).returning(usage.c.id)


class UsageStore:
    def __init__(self, session: Session, dialect: str) -> None:
        self.session = session
        self._insert = _insert_usage(dialect)

    def store_usage(self, usage: Usage) -> bool:
        """Append a usage record; False (and nothing written) when the user has
        a record of its request_id."""
        return self.session.execute(self._insert, _usage_values(usage)).first() is not None

    def amend_abandoned(self, usage: Usage) -> bool:
        """Turn the user's abandoned record of usage.request_id (the reaper's)
        into this one, the attempt's settled record; False when there is none.
        The one change the append-only ledger allows (migration 0004)."""
        values = _usage_values(usage)
        amended = self.session.execute(
            update(UsageRow)
            .where(
                UsageRow.user_id == usage.user_id,
                UsageRow.request_id == usage.request_id,
                UsageRow.reservation_id == values["reservation_id"],
                UsageRow.outcome == Outcome.ABANDONED.value,
            )
            .values({k: v for k, v in values.items() if k not in ("request_id", "user_id")})
            .returning(UsageRow.id)
        ).first()
        return amended is not None

    def has_record(self, user_id: str, request_id: str) -> bool:
        """Whether the user has a record of request_id (one unique index probe)."""
        return (
            self.session.scalar(
                select(UsageRow.id)
                .where(UsageRow.user_id == user_id, UsageRow.request_id == request_id)
                .limit(1)
            )
            is not None
        )

    def load_by_request_id(self, user_id: str, request_id: str) -> Usage | None:
        row = self.session.scalar(
            select(UsageRow).where(UsageRow.user_id == user_id, UsageRow.request_id == request_id)
        )
        return usage_of_row(row) if row else None

    def load_summary(
        self, user_id: str, span: tuple[datetime, datetime], month: tuple[datetime, datetime]
    ) -> UsageSummary:
        """GetUsageStats' figures of a span and of the month (usage_summary)."""
        return load_usage_summary(self.session, user_id, span, month)

    def load_page(
        self,
        user_id: str,
        *,
        after: Cursor | None,
        limit: int,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[tuple[Usage, Cursor]]:
        """Up to limit of the user's records, newest first, after the cursor."""
        statement = select(UsageRow).where(UsageRow.user_id == user_id)
        if start is not None:
            statement = statement.where(UsageRow.created_at >= start)
        if end is not None:
            statement = statement.where(UsageRow.created_at < end)
        if after is not None:
            # A row-value comparison: an index range, however deep the page.
            statement = statement.where(
                tuple_(UsageRow.created_at, UsageRow.id)
                < tuple_(literal(after.created_at, UtcDateTime()), literal(after.id, AutoId))
            )
        statement = statement.order_by(UsageRow.created_at.desc(), UsageRow.id.desc()).limit(limit)
        return [
            (usage_of_row(row), Cursor(row.created_at, row.id))
            for row in self.session.scalars(statement)
        ]


def _usage_values(usage: Usage) -> dict[str, object]:
    if usage.outcome is None or usage.created_at is None:
        raise ValueError("a stored usage record needs an outcome and a created_at")
    values: dict[str, object] = {name: getattr(usage, name) for name in _USAGE_FIELDS}
    values["outcome"] = usage.outcome.value
    values["reservation_id"] = usage.reservation_id or None
    values["prompt_fingerprint"] = fingerprint_of(usage)
    values.update({name: getattr(usage, name) or None for name in _OPTIONAL_KEYS})
    values["kind"] = usage.kind.value
    if usage.kind is not UsageKind.IMAGE:
        # Not an image's prompt: NULL keeps it out of the prompt figures
        # (migration 0013's rollups count only records that know theirs).
        values["custom_prompt"] = None
    return values


def usage_of_row(row: UsageRow) -> Usage:
    values = {name: getattr(row, name) for name in _USAGE_FIELDS}
    values["similar_allowed"] = bool(row.similar_allowed)
    values["custom_prompt"] = bool(row.custom_prompt)
    values.update({name: getattr(row, name) or "" for name in _OPTIONAL_KEYS})
    return Usage(
        **values,
        outcome=Outcome(row.outcome),
        reservation_id=row.reservation_id or "",
        kind=UsageKind(row.kind or UsageKind.IMAGE),
    )
