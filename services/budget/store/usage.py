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
from typing import Any

from sqlalchemy import (
    ARRAY,
    Executable,
    String,
    bindparam,
    cast,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from services.budget.domain.abuse import fingerprint_of
from services.budget.domain.usage import Cursor, Outcome, Usage, UsageKind, UsageSummary
from services.budget.store.models import (
    AutoId,
    ReservationRow,
    UsageRow,
    insert_or_skip,
    table,
)
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


# A record's key: (user_id, request_id).
Key = tuple[str, str]


@functools.cache
def _insert_usages(dialect: str, columns: tuple[str, ...]) -> Executable:
    """Records in one INSERT ... ON CONFLICT DO NOTHING RETURNING the keys
    written (none of those that conflicted), its rows in the given order.

    On PostgreSQL the rows come as one array a column, unnested: a short
    statement whatever the batch's size, parsed and planned once (a
    multi-row VALUES of a batch is a 5,000-parameter text that the driver
    parses again on every call, the most of a batch's time). Elsewhere an
    executemany of the same INSERT."""
    usage = table(UsageRow)
    statement = insert_or_skip(dialect, usage, usage.c.user_id, usage.c.request_id)
    if dialect == "postgresql":
        rows = (
            func.unnest(*(cast(bindparam(name), ARRAY(usage.c[name].type)) for name in columns))
            .table_valued(*columns)
            .render_derived()
        )
        statement = statement.from_select(list(columns), select(*rows.c))
    return statement.returning(usage.c.user_id, usage.c.request_id)


def _keys_of(dialect: str, user_id: Any, key: Any) -> Any:
    """A condition on (user_id, key) in the `keys` parameter; on PostgreSQL
    two arrays (one short statement however many keys)."""
    if dialect != "postgresql":
        return tuple_(user_id, key).in_(bindparam("keys", expanding=True))
    keys = (
        func.unnest(
            cast(bindparam("users"), ARRAY(String())), cast(bindparam("ids"), ARRAY(String()))
        )
        .table_valued("user_id", "id")
        .render_derived()
    )
    return tuple_(user_id, key).in_(select(*keys.c))


@functools.cache
def _reserved_keys(dialect: str) -> Executable:
    return select(ReservationRow.user_id, ReservationRow.idempotency_key).where(
        _keys_of(dialect, ReservationRow.user_id, ReservationRow.idempotency_key)
    )


@functools.cache
def _records_of_keys(dialect: str) -> Executable:
    return select(UsageRow).where(_keys_of(dialect, UsageRow.user_id, UsageRow.request_id))


class UsageStore:
    def __init__(self, session: Session, dialect: str) -> None:
        self.session = session
        self._dialect = dialect
        self._insert = _insert_usage(dialect)

    def store_usage(self, usage: Usage) -> bool:
        """Append a usage record; False (and nothing written) when the user has
        a record of its request_id."""
        return self.session.execute(self._insert, _usage_values(usage)).first() is not None

    def store_usages(self, usages: list[Usage]) -> set[Key]:
        """Append records in one statement (in the list's order, which is the
        order their keys are locked in); the keys written. A record whose key
        has a record (or an earlier one in the list) is skipped; one that a
        concurrent transaction is writing waits for it, then is skipped if
        that one committed."""
        if not usages:
            return set()
        values = [_usage_values(usage) for usage in usages]
        columns = tuple(values[0])
        statement = _insert_usages(self._dialect, columns)
        if self._dialect == "postgresql":
            rows = self.session.execute(
                statement, {name: [row[name] for row in values] for name in columns}
            )
        else:
            rows = self.session.execute(statement, values)
        return {(row.user_id, row.request_id) for row in rows}

    def reserved_keys(self, keys: list[Key]) -> set[Key]:
        """Which of the keys are a reservation's idempotency key (one statement)."""
        if not keys:
            return set()
        rows = self.session.execute(_reserved_keys(self._dialect), self._keys_params(keys))
        return {(row.user_id, row.idempotency_key) for row in rows}

    def load_by_keys(self, keys: list[Key]) -> dict[Key, Usage]:
        """The records of the keys that have one (one statement)."""
        if not keys:
            return {}
        rows = self.session.scalars(_records_of_keys(self._dialect), self._keys_params(keys))
        return {(row.user_id, row.request_id): usage_of_row(row) for row in rows}

    def _keys_params(self, keys: list[Key]) -> dict[str, object]:
        if self._dialect != "postgresql":
            return {"keys": keys}
        return {"users": [user for user, _ in keys], "ids": [key for _, key in keys]}

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
