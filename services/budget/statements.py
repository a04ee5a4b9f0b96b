"""The hot path's SQL, built once per dialect as Core statements with bind
parameters. Building a statement costs more Python time than running it on a
local PostgreSQL; built once, each execution is a compiled-cache hit and one
round trip. The repositories execute these; nothing else should.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Date,
    Executable,
    String,
    TextClause,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import TypeEngine

from services.budget.domain import ReservationState
from services.budget.models import (
    ReservationRow,
    SystemLimitsRow,
    UsageDailyRow,
    UsageRow,
    UserRow,
    WindowRow,
)

USERS = UserRow.__table__
SYSTEM = SystemLimitsRow.__table__
WINDOWS = WindowRow.__table__
RESERVATIONS = ReservationRow.__table__
USAGE = UsageRow.__table__
DAILY = UsageDailyRow.__table__

SYSTEM_LIMITS_ID = 1
HELD = ReservationState.HELD.value
EXPIRED = ReservationState.EXPIRED.value
COMMITTED = ReservationState.COMMITTED.value
RELEASED = ReservationState.RELEASED.value

USER_COLUMNS = (
    USERS.c.tier,
    USERS.c.override_daily_micros,
    USERS.c.override_monthly_micros,
    USERS.c.override_per_generation_micros,
    USERS.c.cap_daily_micros,
    USERS.c.cap_monthly_micros,
    USERS.c.cap_per_generation_micros,
)


def _window_is(prefix: str):  # type: ignore[no-untyped-def]
    return (
        (WINDOWS.c.scope == bindparam(f"{prefix}scope"))
        & (WINDOWS.c.subject == bindparam(f"{prefix}subject"))
        & (WINDOWS.c.kind == bindparam(f"{prefix}kind"))
        & (WINDOWS.c.start_date == bindparam(f"{prefix}start_date"))
    )


def _settings(*extra):  # type: ignore[no-untyped-def]
    """The user's stored settings and the system limits in one row: the system
    row always exists; the user's only when something was stored for it."""
    return (
        select(*USER_COLUMNS, SYSTEM.c.daily_limit_micros, SYSTEM.c.monthly_limit_micros, *extra)
        .select_from(SYSTEM.outerjoin(USERS, USERS.c.user_id == bindparam("user_id")))
        .where(SYSTEM.c.id == SYSTEM_LIMITS_ID)
    )


@dataclass(frozen=True)
class Statements:
    limit_settings: Executable
    reserve_context: Executable
    add_reservation: Executable
    hold: Executable
    settle: Executable
    commit_if_open: Executable
    release_if: Executable
    expire_if_held: Executable
    reservation_by_id: Executable
    reservation_by_key: Executable
    insert_usage: Executable


# A reservation's four windows, in lock order: parameters w0_scope ... w3_start_date.
WINDOW_ROWS = 4
_LOCK_ORDER_NAMES = ("user_day", "user_month", "system_day", "system_month")


def _window_rows(values: str) -> str:
    """The VALUES rows of a reservation's four windows, in lock order."""
    return ",\n    ".join(
        f"(:w{n}_scope, :w{n}_subject, :w{n}_kind, :w{n}_start_date, {values})"
        for n in range(WINDOW_ROWS)
    )


def _typed(sql: str, **extra: TypeEngine) -> TextClause:
    types: dict[str, TypeEngine] = {}
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


def _hold() -> TextClause:
    """Hold amount in all four windows, in one statement: each row is created
    holding amount, or amount is added to it if spent + reserved + amount
    stays within that window's limit (parameters limit_user_day ...). The rows
    are given, and so locked, in lock order (PostgreSQL takes the rows of a
    multi-row INSERT in the order given). RETURNING names the windows that
    took the hold; one missing means a refusal, and the caller rolls back."""
    sql = f"""
INSERT INTO budget_windows
    (scope, subject, kind, start_date, spent_micros, reserved_micros, overrun_micros)
VALUES
    {_window_rows("0, :amount, 0")}
ON CONFLICT (scope, subject, kind, start_date) DO UPDATE
SET reserved_micros = budget_windows.reserved_micros + excluded.reserved_micros
WHERE budget_windows.spent_micros + budget_windows.reserved_micros + excluded.reserved_micros
    <= CASE excluded.scope || '_' || excluded.kind
        {" ".join(f"WHEN '{name}' THEN :limit_{name}" for name in _LOCK_ORDER_NAMES)}
    END
RETURNING scope, kind
"""
    limits = {f"limit_{name}": BigInteger() for name in _LOCK_ORDER_NAMES}
    return _typed(sql, amount=BigInteger(), **limits)


def _settle() -> TextClause:
    """Take unhold from reserved and add spend (and overrun) to all four
    windows of a reservation, in one statement and in lock order. The rows
    exist (the hold created them); the INSERT is the way to update rows in a
    given order. Should one have been deleted by hand, it comes back holding
    the spend, so no spend is lost (and reconciliation shows the rest)."""
    sql = f"""
INSERT INTO budget_windows
    (scope, subject, kind, start_date, spent_micros, reserved_micros, overrun_micros)
VALUES
    {_window_rows(":spend, 0, :overrun")}
ON CONFLICT (scope, subject, kind, start_date) DO UPDATE
SET reserved_micros = budget_windows.reserved_micros - :unhold,
    spent_micros = budget_windows.spent_micros + excluded.spent_micros,
    overrun_micros = budget_windows.overrun_micros + excluded.overrun_micros
RETURNING scope
"""
    return _typed(sql, spend=BigInteger(), overrun=BigInteger(), unhold=BigInteger())


@functools.cache
def statements(dialect: str) -> Statements:
    if dialect == "postgresql":
        insert = postgresql.insert
    elif dialect == "sqlite":
        insert = sqlite.insert
    else:
        raise RuntimeError(f"unsupported database dialect {dialect!r}")
    key = bindparam("key")
    return Statements(
        limit_settings=_settings(),
        reserve_context=_settings(
            select(RESERVATIONS.c.id)
            .where(RESERVATIONS.c.idempotency_key == key)
            .scalar_subquery()
            .label("existing_id"),
            exists().where(USAGE.c.request_id == key).label("recorded"),
        ),
        # Executed with every column as a parameter.
        add_reservation=insert(RESERVATIONS)
        .on_conflict_do_nothing(index_elements=[RESERVATIONS.c.idempotency_key])
        .returning(RESERVATIONS.c.id),
        hold=_hold(),
        settle=_settle(),
        commit_if_open=update(RESERVATIONS)
        .where(
            RESERVATIONS.c.id == bindparam("reservation_id"),
            RESERVATIONS.c.state.in_([HELD, EXPIRED]),
        )
        .values(
            state=COMMITTED,
            finished_at=bindparam("now"),
            committed_micros=bindparam("committed"),
            overrun=RESERVATIONS.c.state == EXPIRED,
        )
        .returning(*RESERVATIONS.c),
        release_if=update(RESERVATIONS)
        .where(
            RESERVATIONS.c.id == bindparam("reservation_id"),
            RESERVATIONS.c.state == bindparam("from_state"),
        )
        .values(state=RELEASED, finished_at=bindparam("now"))
        .returning(*RESERVATIONS.c),
        expire_if_held=update(RESERVATIONS)
        .where(
            RESERVATIONS.c.id == bindparam("reservation_id"),
            RESERVATIONS.c.state == HELD,
            RESERVATIONS.c.expires_at <= bindparam("now"),
        )
        .values(state=EXPIRED, finished_at=bindparam("now"))
        .returning(*RESERVATIONS.c),
        reservation_by_id=select(RESERVATIONS).where(
            RESERVATIONS.c.id == bindparam("reservation_id")
        ),
        reservation_by_key=select(RESERVATIONS).where(RESERVATIONS.c.idempotency_key == key),
        # Executed with every column as a parameter.
        insert_usage=insert(USAGE)
        .on_conflict_do_nothing(index_elements=[USAGE.c.request_id])
        .returning(USAGE.c.id),
    )


@functools.cache
def counters(count: int) -> Executable:
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


# The parts of a usage summary (the "part" column of usage_summary's rows).
PART_TOTAL, PART_MONTH, PART_BREAKDOWN, PART_OUTCOME = "1 total", "2 month", "3 model", "4 outcome"
_KINDS = ("model", "size", "quality", "outcome")


def _facts(prefix: str):  # type: ignore[no-untyped-def]
    """A range's usage as pre-aggregated rows by model, size, quality and
    outcome: whole UTC days [d0, d1) from the rollup, and the partial days at
    the edges, [h0, h1) and [t0, t1), from the ledger, each one index range."""
    u, d = USAGE.c, DAILY.c
    rolled = select(
        d.model,
        d.size,
        d.quality,
        d.outcome,
        d.generations.label("generations"),
        d.cost_micros.label("cost"),
        d.successful.label("successful"),
        d.cache_hits.label("cache_hits"),
        d.cost_saved_micros.label("saved"),
        d.last_at.label("last_at"),
    ).where(
        d.user_id == bindparam("user_id"),
        d.day >= bindparam(f"{prefix}d0"),
        d.day < bindparam(f"{prefix}d1"),
    )

    def edge(start: str, end: str):  # type: ignore[no-untyped-def]
        return (
            select(
                u.model,
                u.size,
                u.quality,
                u.outcome,
                func.count(),
                func.sum(u.cost_micros),
                func.count().filter(u.success.is_(True)),
                func.count().filter(u.cached.is_(True)),
                func.sum(u.cost_saved_micros),
                func.max(u.created_at),
            )
            .where(
                u.user_id == bindparam("user_id"),
                u.created_at >= bindparam(f"{prefix}{start}"),
                u.created_at < bindparam(f"{prefix}{end}"),
            )
            .group_by(u.model, u.size, u.quality, u.outcome)
        )

    return union_all(rolled, edge("h0", "h1"), edge("t0", "t1")).cte(f"{prefix}facts")


def _summary_part(part: str, facts, group: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """One aggregate of a range's facts, grouped by group. A union's columns
    must line up, so the kinds not grouped by are typed NULLs."""
    c = facts.c

    def kind(name: str):  # type: ignore[no-untyped-def]
        column = c[name]
        return (column if name in group else cast(null(), column.type)).label(name)

    return (
        select(
            literal(part).label("part"),
            *(kind(name) for name in _KINDS),
            func.sum(c.generations).label("generations"),
            func.sum(c.cost).label("cost"),
            func.sum(c.successful).label("successful"),
            func.sum(case((c.outcome == "fallback", c.generations), else_=0)).label("fallback"),
            func.max(c.last_at).label("last_at"),
            func.sum(c.cache_hits).label("cache_hits"),
            func.sum(c.saved).label("saved"),
        )
        .select_from(facts)
        .group_by(*(c[name] for name in group))
    )


@functools.cache
def usage_summary() -> Executable:
    """Everything GetUsageStats reports, in one statement (so one round trip
    and one snapshot): the period's totals, the month's totals, the period by
    model, size and quality, and by outcome. Parameters: user_id, and for the
    period (p_) and the month (m_) the rollup days d0, d1 and the edges h0,
    h1, t0, t1 (see UsageRepository.summary)."""
    period, month = _facts("p_"), _facts("m_")
    return union_all(
        _summary_part(PART_TOTAL, period, ()),
        _summary_part(PART_MONTH, month, ()),
        _summary_part(PART_BREAKDOWN, period, ("model", "size", "quality")),
        _summary_part(PART_OUTCOME, period, ("outcome",)),
    ).order_by(
        literal_column("part"),
        literal_column("cost").desc(),
        literal_column("generations").desc(),
        *(literal_column(name) for name in _KINDS),
    )
