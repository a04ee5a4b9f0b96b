"""The window counters (spent, reserved, overrun per user or system day and
month): the hot path's statements, built once, and the WindowStore that runs
them.

Counters change only through single conditional statements that take a
reservation's four rows in lock order, so a limit holds however many
transactions run at once, in every replica, and no two wait in a cycle.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    Executable,
    String,
    TextClause,
    bindparam,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

from services.budget.domain.alert_rules import WindowSpend
from services.budget.domain.reservations import Counters, Settlement
from services.budget.domain.windows import WindowKey
from services.budget.store.models import WindowRow, table
from services.common.db import UtcDateTime

WINDOWS = table(WindowRow)

# A reservation's four windows, in lock order: parameters w0_scope ... w3_start_date.
WINDOW_ROWS = 4
_LOCK_ORDER_NAMES = ("user_day", "user_month", "system_day", "system_month")


def _window_rows(values: str) -> str:
    """The VALUES rows of a reservation's four windows, in lock order; "{limit}"
    in values is each row's own limit parameter (limit_user_day ...)."""
    return ",\n    ".join(
        f"(:w{n}_scope, :w{n}_subject, :w{n}_kind, :w{n}_start_date, "
        f"{values.replace('{limit}', f':limit_{_LOCK_ORDER_NAMES[n]}')})"
        for n in range(WINDOW_ROWS)
    )


def _typed(sql: str, **extra: TypeEngine[Any]) -> TextClause:
    types: dict[str, TypeEngine[Any]] = {}
    for n in range(WINDOW_ROWS):
        types |= {
            f"w{n}_scope": String(),
            f"w{n}_subject": String(),
            f"w{n}_kind": String(),
            f"w{n}_start_date": Date(),
        }
    types |= extra
    return text(sql).bindparams(*(bindparam(name, type_=type_) for name, type_ in types.items()))


# The multi-row statements are written as SQL: SQLAlchemy does not cache a
# multi-row VALUES construct and would compile it again on every call.


_WOULD_HOLD = (
    "budget_windows.spent_micros + budget_windows.reserved_micros + excluded.reserved_micros"
)
_LIMIT = f"""CASE excluded.scope || '_' || excluded.kind
        {" ".join(f"WHEN '{name}' THEN :limit_{name}" for name in _LOCK_ORDER_NAMES)}
    END"""
# The window's credits that count at :now. Read only for a row that was ever
# credited (credit_micros > 0) and only when the limit alone has no room, so a
# hold without credits costs what it did; exact, since an expired credit
# drops out by its expires_at, with no job to run first.
_ACTIVE_CREDIT = """(SELECT COALESCE(SUM(c.amount_micros), 0) FROM budget_credits AS c
        WHERE c.scope = budget_windows.scope AND c.subject = budget_windows.subject
        AND c.kind = budget_windows.kind AND c.start_date = budget_windows.start_date
        AND c.expires_at > :now)"""


@functools.cache
def _hold() -> TextClause:
    """Hold amount in all four windows, in one statement: each row is created
    holding amount, or amount is added to it if spent + reserved + amount
    stays within that window's limit (parameters limit_user_day ...) plus
    its credits that count at now (parameter now). The rows
    are given, and so locked, in lock order (PostgreSQL takes the rows of a
    multi-row INSERT in the order given). RETURNING names the windows that
    took the hold; one missing means a refusal, and the caller rolls back.
    Each row keeps the limit it was held against, for the commit's alerts."""
    sql = f"""
INSERT INTO budget_windows
    (scope, subject, kind, start_date, spent_micros, reserved_micros, overrun_micros,
     limit_micros)
VALUES
    {_window_rows("0, :amount, 0, {limit}")}
ON CONFLICT (scope, subject, kind, start_date) DO UPDATE
SET reserved_micros = budget_windows.reserved_micros + excluded.reserved_micros,
    limit_micros = excluded.limit_micros
WHERE {_WOULD_HOLD} <= {_LIMIT}
    OR (budget_windows.credit_micros > 0 AND {_WOULD_HOLD} <= {_LIMIT} + {_ACTIVE_CREDIT})
RETURNING scope, kind
"""
    limits: dict[str, TypeEngine[Any]] = {
        f"limit_{name}": BigInteger() for name in _LOCK_ORDER_NAMES
    }
    return _typed(sql, amount=BigInteger(), now=UtcDateTime(), **limits)


@functools.cache
def _settle() -> TextClause:
    """Take unhold from reserved and add spend (and overrun) to all four
    windows of a reservation, in one statement and in lock order. The rows
    exist (the hold created them); the INSERT is the way to update rows in a
    given order. Should one have been deleted by hand, it comes back holding
    the spend, so no spend is lost (and reconciliation shows the rest).
    RETURNING the new spent, the stored limit, the credits granted and those
    that count at :now (read only for a row ever credited): what threshold
    alerts need, in the same round trip."""
    sql = f"""
INSERT INTO budget_windows
    (scope, subject, kind, start_date, spent_micros, reserved_micros, overrun_micros)
VALUES
    {_window_rows(":spend, 0, :overrun")}
ON CONFLICT (scope, subject, kind, start_date) DO UPDATE
SET reserved_micros = budget_windows.reserved_micros - :unhold,
    spent_micros = budget_windows.spent_micros + excluded.spent_micros,
    overrun_micros = budget_windows.overrun_micros + excluded.overrun_micros
RETURNING scope, kind, spent_micros, limit_micros, credit_micros,
    CASE WHEN credit_micros > 0 THEN {_ACTIVE_CREDIT} ELSE 0 END AS active_credit_micros
"""
    return _typed(
        sql, spend=BigInteger(), overrun=BigInteger(), unhold=BigInteger(), now=UtcDateTime()
    )


def _window_is(prefix: str) -> ColumnElement[bool]:
    return (
        (WINDOWS.c.scope == bindparam(f"{prefix}scope"))
        & (WINDOWS.c.subject == bindparam(f"{prefix}subject"))
        & (WINDOWS.c.kind == bindparam(f"{prefix}kind"))
        & (WINDOWS.c.start_date == bindparam(f"{prefix}start_date"))
    )


@functools.cache
def _counters(count: int) -> Executable:
    """Spent, reserved and overrun of `count` windows (parameters k0_scope ...)."""
    return select(
        WINDOWS.c.scope,
        WINDOWS.c.subject,
        WINDOWS.c.kind,
        WINDOWS.c.start_date,
        WINDOWS.c.spent_micros,
        WINDOWS.c.reserved_micros,
        WINDOWS.c.overrun_micros,
    ).where(or_(*(_window_is(f"k{number}_") for number in range(count))))


def _window_params(key: WindowKey, prefix: str) -> dict[str, object]:
    return {
        f"{prefix}scope": key.scope.value,
        f"{prefix}subject": key.subject,
        f"{prefix}kind": key.span.value,
        f"{prefix}start_date": key.start_date,
    }


def as_date(value: date | str) -> date:
    """A DATE column's value (SQLite may return its text)."""
    return value if isinstance(value, date) else date.fromisoformat(value)


class WindowStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def hold(
        self,
        limits: Sequence[tuple[WindowKey, int]],
        amount_micros: int,
        now: datetime,
        credited: frozenset[WindowKey] = frozenset(),
    ) -> set[WindowKey]:
        """Hold amount in a reservation's four windows (with their limits, in
        lock order) where spent + reserved + amount stays within the limit
        plus the window's credits active at now: one conditional upsert for
        all four, one round trip. Returns the windows that took it; any other
        refuses, and the caller must roll back. Rows are created holding
        amount, so amount <= every limit must hold but for windows known to
        have credits (`credited`: their rows exist, a grant created them)."""
        if len(limits) != WINDOW_ROWS or any(
            amount_micros > limit and key not in credited for key, limit in limits
        ):
            raise ValueError("four windows, each with room for the amount, are needed")
        params: dict[str, object] = {"amount": amount_micros, "now": now}
        for number, (key, limit) in enumerate(limits):
            params |= _window_params(key, f"w{number}_")
            params[f"limit_{key.scope.value}_{key.span.value}"] = limit
        granted = {(row.scope, row.kind) for row in self.session.execute(_hold(), params)}
        return {key for key, _ in limits if (key.scope.value, key.span.value) in granted}

    def settle(
        self, keys: Sequence[WindowKey], settlement: Settlement, now: datetime
    ) -> list[WindowSpend]:
        """Apply a settlement to a reservation's four windows (in lock order),
        in one statement. Returns each window's spent after it against its
        effective limit at now: the limit it was last held against plus its
        credits that count at now, with those granted that no longer count
        (windows without a stored limit left out)."""
        params: dict[str, object] = {
            "unhold": settlement.unhold_micros,
            "spend": settlement.spend_micros,
            "overrun": settlement.overrun_micros,
            "now": now,
        }
        for number, key in enumerate(keys):
            params |= _window_params(key, f"w{number}_")
        rows = self.session.execute(_settle(), params).all()
        by_name = {(key.scope.value, key.span.value): key for key in keys}
        return [
            WindowSpend(
                by_name[(row.scope, row.kind)],
                int(row.limit_micros) + int(row.active_credit_micros),
                row.spent_micros,
                lapsed_credit_micros=int(row.credit_micros) - int(row.active_credit_micros),
            )
            for row in rows
            if row.limit_micros is not None
        ]

    def store_limits(self, limits: Iterable[tuple[WindowKey, int]]) -> None:
        """Record windows' new limits (a limit change), where their rows exist."""
        for key, limit in limits:
            self.session.execute(
                update(WINDOWS)
                .where(
                    WINDOWS.c.scope == key.scope.value,
                    WINDOWS.c.subject == key.subject,
                    WINDOWS.c.kind == key.span.value,
                    WINDOWS.c.start_date == key.start_date,
                )
                .values(limit_micros=limit)
            )

    def load_counters(self, keys: Iterable[WindowKey]) -> dict[WindowKey, Counters]:
        """Spent, reserved and overrun of each window, in one query; a window
        without a row has none."""
        keys = list(keys)
        params: dict[str, object] = {}
        for number, key in enumerate(keys):
            params |= _window_params(key, f"k{number}_")
        rows = self.session.execute(_counters(len(keys)), params).all()
        found = {
            (row.scope, row.subject, row.kind, as_date(row.start_date)): Counters(
                row.spent_micros, row.reserved_micros, row.overrun_micros
            )
            for row in rows
        }
        return {
            key: found.get((key.scope.value, key.subject, key.span.value, key.start_date))
            or Counters()
            for key in keys
        }
