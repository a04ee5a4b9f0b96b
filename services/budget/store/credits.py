"""Credits (GrantCredit): the credits table, the window row's credit_micros
kept in the grant's transaction, and reconciliation's check of one against
the other."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Executable,
    Table,
    and_,
    bindparam,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from services.budget.domain.credits import Credit
from services.budget.domain.reconciliation import MAX_DIFFERENCES, CheckedRange, Difference
from services.budget.domain.reservations import Counters
from services.budget.domain.windows import (
    Period,
    Scope,
    Span,
    WindowKey,
    period_starting,
    window_name,
)
from services.budget.store.models import CreditRow, WindowRow, table
from services.budget.store.windows import as_date
from services.common.db import UtcDateTime, insert_for

CREDITS = table(CreditRow)
WINDOWS = table(WindowRow)


class CreditStore:
    def __init__(self, session: Session, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    def store_credit(self, credit: Credit) -> Credit:
        """Append a credit and add it to its window row's credit_micros (the
        row is created when the window has none yet): one transaction with
        the caller's audit entry. Returns the credit with its id."""
        key = credit.key
        credit_id = self.session.execute(
            insert(CreditRow)
            .values(
                scope=key.scope.value,
                subject=key.subject,
                kind=key.span.value,
                start_date=key.start_date,
                amount_micros=credit.amount_micros,
                reason=credit.reason,
                created_at=credit.created_at,
                expires_at=credit.expires_at,
                created_by=credit.created_by,
            )
            .returning(CreditRow.id)
        ).scalar_one()
        add = insert_for(self.dialect, WINDOWS).values(
            scope=key.scope.value,
            subject=key.subject,
            kind=key.span.value,
            start_date=key.start_date,
            spent_micros=0,
            reserved_micros=0,
            overrun_micros=0,
            credit_micros=credit.amount_micros,
        )
        self.session.execute(
            add.on_conflict_do_update(
                index_elements=[
                    WINDOWS.c.scope,
                    WINDOWS.c.subject,
                    WINDOWS.c.kind,
                    WINDOWS.c.start_date,
                ],
                set_={"credit_micros": WINDOWS.c.credit_micros + add.excluded.credit_micros},
            )
        )
        return Credit(
            credit_id,
            key,
            credit.period,
            credit.amount_micros,
            credit.reason,
            credit.created_at,
            credit.expires_at,
            credit.created_by,
        )

    def load_active_amounts(self, keys: Sequence[WindowKey], now: datetime) -> dict[WindowKey, int]:
        """The sum of each window's credits that count at now (0: none)."""
        rows = self.session.execute(
            select(
                CREDITS.c.scope,
                CREDITS.c.subject,
                CREDITS.c.kind,
                CREDITS.c.start_date,
                func.sum(CREDITS.c.amount_micros).label("active"),
            )
            .where(_any_window(keys), CREDITS.c.expires_at > now)
            .group_by(CREDITS.c.scope, CREDITS.c.subject, CREDITS.c.kind, CREDITS.c.start_date)
        ).all()
        found = {
            WindowKey(Scope(r.scope), r.subject, Span(r.kind), as_date(r.start_date)): int(r.active)
            for r in rows
        }
        return {key: found.get(key, 0) for key in keys}

    def load_for_windows(self, keys: Sequence[WindowKey], zone: ZoneInfo) -> list[Credit]:
        """The credits of these window instances, active or not, oldest first."""
        if not keys:
            return []
        statement = select(CREDITS).where(_any_window(keys)).order_by(CREDITS.c.id)
        return [_credit(row, zone) for row in self.session.execute(statement)]

    def load_counters_and_credits(
        self, keys: Sequence[WindowKey], zone: ZoneInfo
    ) -> tuple[dict[WindowKey, Counters], list[Credit]]:
        """Each window's counters (none without a row) and its credits,
        active or not, oldest first: one statement, built once per count of
        windows (GetLimits and CheckBudget read four)."""
        if not keys:
            return {}, []
        params: dict[str, object] = {}
        for number, key in enumerate(keys):
            params |= {
                f"k{number}_scope": key.scope.value,
                f"k{number}_subject": key.subject,
                f"k{number}_kind": key.span.value,
                f"k{number}_start_date": key.start_date,
            }
        counters: dict[WindowKey, Counters] = {}
        credits = []
        for row in self.session.execute(_counters_and_credits(len(keys)), params):
            if row.id is None:
                key = WindowKey(
                    Scope(row.scope), row.subject, Span(row.kind), as_date(row.start_date)
                )
                counters[key] = Counters(
                    int(row.amount_micros), int(row.reserved), int(row.overrun)
                )
            else:
                credits.append(_credit(row, zone))
        return {key: counters.get(key) or Counters() for key in keys}, credits


@functools.cache
def _counters_and_credits(count: int) -> Executable:
    """The window rows (id NULL) and then the credits (by id) of `count`
    windows, parameters k0_scope ... in one UNION ALL."""

    def any_key(table: Table) -> ColumnElement[bool]:
        return or_(
            *(
                and_(
                    table.c.scope == bindparam(f"k{n}_scope"),
                    table.c.subject == bindparam(f"k{n}_subject"),
                    table.c.kind == bindparam(f"k{n}_kind"),
                    table.c.start_date == bindparam(f"k{n}_start_date"),
                )
                for n in range(count)
            )
        )

    windows = select(
        type_coerce(null(), BigInteger()).label("id"),
        WINDOWS.c.scope,
        WINDOWS.c.subject,
        WINDOWS.c.kind,
        WINDOWS.c.start_date,
        WINDOWS.c.spent_micros.label("amount_micros"),
        WINDOWS.c.reserved_micros.label("reserved"),
        WINDOWS.c.overrun_micros.label("overrun"),
        type_coerce(null(), CREDITS.c.reason.type).label("reason"),
        type_coerce(null(), UtcDateTime()).label("created_at"),
        type_coerce(null(), UtcDateTime()).label("expires_at"),
        type_coerce(null(), CREDITS.c.created_by.type).label("created_by"),
    ).where(any_key(WINDOWS))
    credits = select(
        CREDITS.c.id,
        CREDITS.c.scope,
        CREDITS.c.subject,
        CREDITS.c.kind,
        CREDITS.c.start_date,
        CREDITS.c.amount_micros,
        literal(0, BigInteger()).label("reserved"),
        literal(0, BigInteger()).label("overrun"),
        CREDITS.c.reason,
        CREDITS.c.created_at,
        CREDITS.c.expires_at,
        CREDITS.c.created_by,
    ).where(any_key(CREDITS))
    both = union_all(windows, credits).subquery("both")
    return select(both).order_by(both.c.id.is_not(None), both.c.id)


def _any_window(keys: Sequence[WindowKey]) -> ColumnElement[bool]:
    return or_(
        *(
            and_(
                CREDITS.c.scope == key.scope.value,
                CREDITS.c.subject == key.subject,
                CREDITS.c.kind == key.span.value,
                CREDITS.c.start_date == key.start_date,
            )
            for key in keys
        )
    )


def _credit(row: Any, zone: ZoneInfo) -> Credit:
    span = Span(row.kind)
    start = as_date(row.start_date)
    return Credit(
        id=int(row.id),
        key=WindowKey(Scope(row.scope), row.subject, span, start),
        period=period_starting(span, start, zone),
        amount_micros=int(row.amount_micros),
        reason=row.reason,
        created_at=row.created_at,
        expires_at=row.expires_at,
        created_by=row.created_by,
    )


def credit_differences(session: Session, checked: CheckedRange) -> list[Difference]:
    """Window rows whose credit_micros is not the sum of their credits, and
    credits of a window without a row (reconciliation)."""
    granted = (
        select(
            CREDITS.c.scope,
            CREDITS.c.subject,
            CREDITS.c.kind,
            CREDITS.c.start_date,
            func.sum(CREDITS.c.amount_micros).label("granted"),
        )
        .group_by(CREDITS.c.scope, CREDITS.c.subject, CREDITS.c.kind, CREDITS.c.start_date)
        .subquery("granted")
    )
    same = and_(
        granted.c.scope == WINDOWS.c.scope,
        granted.c.subject == WINDOWS.c.subject,
        granted.c.kind == WINDOWS.c.kind,
        granted.c.start_date == WINDOWS.c.start_date,
    )
    ledger = func.coalesce(granted.c.granted, 0)
    in_range = or_(
        and_(WINDOWS.c.kind == Span.DAY.value, WINDOWS.c.start_date >= checked.since_day),
        and_(WINDOWS.c.kind == Span.MONTH.value, WINDOWS.c.start_date >= checked.since_month),
    )
    off = (
        select(
            WINDOWS.c.scope,
            WINDOWS.c.subject,
            WINDOWS.c.kind,
            WINDOWS.c.start_date,
            WINDOWS.c.credit_micros.label("counter"),
            ledger.label("ledger"),
        )
        .select_from(WINDOWS.outerjoin(granted, same))
        .where(in_range, WINDOWS.c.credit_micros != ledger)
    )
    rowless = (
        select(
            granted.c.scope,
            granted.c.subject,
            granted.c.kind,
            granted.c.start_date,
            literal(0).label("counter"),
            granted.c.granted.label("ledger"),
        )
        .where(~select(WINDOWS.c.scope).where(same).exists())
        .where(
            or_(
                and_(granted.c.kind == Span.DAY.value, granted.c.start_date >= checked.since_day),
                and_(
                    granted.c.kind == Span.MONTH.value,
                    granted.c.start_date >= checked.since_month,
                ),
            )
        )
    )
    rows = session.execute(union_all(off, rowless).limit(MAX_DIFFERENCES + 1)).all()
    found = []
    for row in rows:
        scope, span, start = Scope(row.scope), Span(row.kind), as_date(row.start_date)
        found.append(
            Difference(
                field="credit_micros",
                counter_micros=int(row.counter),
                ledger_micros=int(row.ledger),
                description=(
                    f"{window_name(scope, span)} window of {start}: the counter says "
                    f"{int(row.counter)} credited, the credits {int(row.ledger)}"
                ),
                scope=scope,
                span=span,
                user_id=row.subject if scope is Scope.USER else "",
                start_date=start,
            )
        )
    return found


def credit_json(credit: Credit) -> dict[str, Any]:
    """A credit as the audit log keeps it."""
    key = credit.key
    return {
        "id": credit.id,
        "scope": key.scope.value,
        "subject": key.subject,
        "kind": key.span.value,
        "start_date": key.start_date.isoformat(),
        "window_start": credit.period.start.isoformat(),
        "window_end": credit.period.end.isoformat(),
        "amount_micros": credit.amount_micros,
        "reason": credit.reason,
        "created_at": credit.created_at.isoformat(),
        "expires_at": credit.expires_at.isoformat(),
        "created_by": credit.created_by,
    }


def credit_from_json(document: dict[str, Any]) -> Credit:
    start = date.fromisoformat(document["start_date"])
    return Credit(
        id=int(document["id"]),
        key=WindowKey(Scope(document["scope"]), document["subject"], Span(document["kind"]), start),
        period=Period(
            start,
            datetime.fromisoformat(document["window_start"]),
            datetime.fromisoformat(document["window_end"]),
        ),
        amount_micros=int(document["amount_micros"]),
        reason=document["reason"],
        created_at=datetime.fromisoformat(document["created_at"]),
        expires_at=datetime.fromisoformat(document["expires_at"]),
        created_by=document["created_by"],
    )
