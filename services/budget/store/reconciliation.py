"""Reconciliation's read-only checks: each one aggregate query, so only the
differences leave the database.

For every window (user and system, day and month): spent equals the cost of
the usage records of the reservations taken in it, reserved the amount of its
reservations still held, overrun the spend no hold covered. For every
reservation: a committed one has exactly one usage record, with its committed
cost; any other has no record with a cost. No usage record carries a cost
without a reservation. The daily rollup equals the ledger it rolls up.
"""

from __future__ import annotations

from datetime import UTC, date
from typing import Any

from sqlalchemy import (
    Date,
    Select,
    Subquery,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from services.budget.domain.reconciliation import MAX_DIFFERENCES, CheckedRange, Difference
from services.budget.domain.reservations import ReservationState
from services.budget.domain.usage import UsageKind
from services.budget.domain.windows import SYSTEM_SUBJECT, Scope, Span, window_name
from services.budget.store.credits import credit_differences
from services.budget.store.dish_firsts import dish_first_differences
from services.budget.store.models import ReservationRow, UsageDailyRow, UsageRow, WindowRow
from services.budget.store.system_rollups import rollup_checks, rollup_mismatches
from services.budget.store.windows import as_date
from services.common.db import dialect_name

COMMITTED = ReservationState.COMMITTED.value
HELD = ReservationState.HELD.value
# One more than is reported, so a caller knows there were more.
_ROWS = MAX_DIFFERENCES + 1


class ReconciliationQueries:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _per_reservation(self, checked: CheckedRange) -> Subquery:
        """Each reservation with the cost and count of its usage records."""
        records = select(
            UsageRow.reservation_id,
            func.sum(UsageRow.cost_micros).label("cost"),
            func.count().label("records"),
        ).where(UsageRow.reservation_id.is_not(None))
        if checked.since_instant is not None:
            records = records.where(UsageRow.created_at >= checked.since_instant)
        records_q = records.group_by(UsageRow.reservation_id).subquery("records")
        committed = ReservationRow.state == COMMITTED
        statement = select(
            ReservationRow.id,
            ReservationRow.user_id,
            ReservationRow.day_start,
            ReservationRow.month_start,
            ReservationRow.state,
            ReservationRow.amount_micros,
            ReservationRow.committed_micros,
            func.coalesce(records_q.c.cost, 0).label("ledger_cost"),
            func.coalesce(records_q.c.records, 0).label("records"),
            case((ReservationRow.state == HELD, ReservationRow.amount_micros), else_=0).label(
                "held"
            ),
            case(
                (
                    and_(committed, ReservationRow.overrun.is_(True)),
                    ReservationRow.committed_micros,
                ),
                (
                    and_(committed, ReservationRow.committed_micros > ReservationRow.amount_micros),
                    ReservationRow.committed_micros - ReservationRow.amount_micros,
                ),
                else_=0,
            ).label("uncovered"),
        ).outerjoin(records_q, records_q.c.reservation_id == ReservationRow.id)
        if checked.since_instant is not None:
            statement = statement.where(ReservationRow.month_start >= checked.since_month)
        return statement.subquery("per_reservation")

    def _ledger_windows(self, checked: CheckedRange, scope: Scope, span: Span) -> Subquery:
        """What the ledger says each window of one kind holds (columns subject,
        start_date, spent, reserved, overrun)."""
        per = self._per_reservation(checked)
        start = per.c.day_start if span is Span.DAY else per.c.month_start
        since = checked.since_day if span is Span.DAY else checked.since_month
        subject = per.c.user_id if scope is Scope.USER else literal(SYSTEM_SUBJECT)
        group = [per.c.user_id, start] if scope is Scope.USER else [start]
        return (
            select(
                subject.label("subject"),
                start.label("start_date"),
                func.sum(per.c.ledger_cost).label("spent"),
                func.sum(per.c.held).label("reserved"),
                func.sum(per.c.uncovered).label("overrun"),
            )
            .where(start >= since)
            .group_by(*group)
            .subquery("ledger")
        )

    def _window_rows(self, checked: CheckedRange, scope: Scope, span: Span) -> list[Any]:
        """The windows of one kind whose counters differ from the ledger, with
        both (columns subject, start_date, spent_micros ... ledger_overrun)."""
        ledger = self._ledger_windows(checked, scope, span)
        since = checked.since_day if span is Span.DAY else checked.since_month
        union = union_all(
            _counters_off_the_ledger(ledger, scope, span, since),
            _ledger_without_counters(ledger, scope, span),
        ).limit(_ROWS)
        return list(self.session.execute(union).all())

    def window_differences(
        self, checked: CheckedRange, scope: Scope, span: Span
    ) -> list[Difference]:
        found = []
        name = window_name(scope, span)
        for row in self._window_rows(checked, scope, span):
            start_date = as_date(row.start_date)
            for field, counter, expected in (
                ("spent_micros", row.spent_micros, row.ledger_spent),
                ("reserved_micros", row.reserved_micros, row.ledger_reserved),
                ("overrun_micros", row.overrun_micros, row.ledger_overrun),
            ):
                if int(counter) != int(expected):
                    found.append(
                        Difference(
                            field=field,
                            counter_micros=int(counter),
                            ledger_micros=int(expected),
                            description=(
                                f"{name} window of {start_date}: the counter says {int(counter)},"
                                f" the ledger {int(expected)}"
                            ),
                            scope=scope,
                            span=span,
                            user_id=row.subject if scope is Scope.USER else "",
                            start_date=start_date,
                        )
                    )
        return found

    def reservation_differences(self, checked: CheckedRange) -> list[Difference]:
        per = self._per_reservation(checked)
        committed = per.c.state == COMMITTED
        rows = self.session.execute(
            select(per.c.id, per.c.user_id, per.c.state, per.c.committed_micros, per.c.ledger_cost)
            .add_columns(per.c.records)
            .where(
                per.c.day_start >= checked.since_day,
                or_(
                    and_(
                        committed,
                        or_(per.c.records != 1, per.c.ledger_cost != per.c.committed_micros),
                    ),
                    and_(~committed, per.c.ledger_cost != 0),
                ),
            )
            .limit(_ROWS)
        ).all()
        return [
            Difference(
                field="usage_record",
                counter_micros=int(row.committed_micros),
                ledger_micros=int(row.ledger_cost),
                description=(
                    f"{row.state} reservation {row.id}: committed {int(row.committed_micros)}, "
                    f"{int(row.records)} usage record(s) costing {int(row.ledger_cost)}"
                ),
                user_id=row.user_id,
                reservation_id=row.id,
            )
            for row in rows
        ]

    def unreserved_spend(self, checked: CheckedRange) -> list[Difference]:
        """Usage records with a cost but no reservation: spend no window counted
        (but a dish recognition's, recorded so by design: README "The dish model")."""
        statement = select(UsageRow.request_id, UsageRow.user_id, UsageRow.cost_micros).where(
            UsageRow.reservation_id.is_(None),
            UsageRow.cost_micros != 0,
            or_(UsageRow.kind.is_(None), UsageRow.kind != UsageKind.DISH_RECOGNITION.value),
        )
        if checked.since_instant is not None:
            statement = statement.where(UsageRow.created_at >= checked.since_instant)
        rows = self.session.execute(statement.limit(_ROWS)).all()
        return [
            Difference(
                field="usage_record",
                counter_micros=0,
                ledger_micros=int(row.cost_micros),
                description=f"usage record {row.request_id} costs {row.cost_micros} "
                "without a reservation",
                user_id=row.user_id,
            )
            for row in rows
        ]

    def _ledger_and_rollup(self, checked: CheckedRange) -> tuple[Subquery, Subquery]:
        """The ledger aggregated as the rollup aggregates it (by user, UTC day
        and kind), and the rollup, both from the checked range on."""
        u, d = UsageRow, UsageDailyRow
        utc_day: ColumnElement[Any]
        if dialect_name(self.session) == "postgresql":
            utc_day = cast(func.timezone("UTC", u.created_at), Date)
        else:
            utc_day = func.date(u.created_at)
        kinds = (u.model, u.size, u.quality, u.outcome)
        ledger_select = select(
            u.user_id,
            utc_day.label("day"),
            *kinds,
            func.count().label("generations"),
            func.sum(u.cost_micros).label("cost"),
            func.count().filter(u.success.is_(True)).label("successful"),
            func.count().filter(u.cached.is_(True)).label("cache_hits"),
            func.sum(u.cost_saved_micros).label("saved"),
        )
        rolled_select = select(d)
        if checked.since_instant is not None:
            since = checked.since_instant.astimezone(UTC)
            midnight = since.replace(hour=0, minute=0, second=0, microsecond=0)
            ledger_select = ledger_select.where(u.created_at >= midnight)
            rolled_select = rolled_select.where(d.day >= since.date())
        ledger = ledger_select.group_by(u.user_id, utc_day, *kinds).subquery("ledger")
        return ledger, rolled_select.subquery("rolled")

    def _rollup_rows(self, checked: CheckedRange) -> list[Any]:
        """Rollup rows that differ from the ledger's records of their user, UTC
        day and kind, and ledger groups without a rollup row."""
        ledger, rolled = self._ledger_and_rollup(checked)
        same_key = and_(
            ledger.c.user_id == rolled.c.user_id,
            ledger.c.day == rolled.c.day,
            *(ledger.c[name] == rolled.c[name] for name in ("model", "size", "quality", "outcome")),
        )
        pairs = [
            (rolled.c.generations, ledger.c.generations),
            (rolled.c.cost_micros, ledger.c.cost),
            (rolled.c.successful, ledger.c.successful),
            (rolled.c.cache_hits, ledger.c.cache_hits),
            (rolled.c.cost_saved_micros, ledger.c.saved),
        ]
        counted = (
            select(
                rolled.c.user_id,
                rolled.c.day,
                rolled.c.outcome,
                rolled.c.generations.label("rolled_generations"),
                func.coalesce(ledger.c.generations, 0).label("ledger_generations"),
                rolled.c.cost_micros.label("rolled_cost"),
                func.coalesce(ledger.c.cost, 0).label("ledger_cost"),
            )
            .select_from(rolled.outerjoin(ledger, same_key))
            .where(or_(*(mine != func.coalesce(theirs, 0) for mine, theirs in pairs)))
        )
        missing = select(
            ledger.c.user_id,
            ledger.c.day,
            ledger.c.outcome,
            literal(0).label("rolled_generations"),
            ledger.c.generations.label("ledger_generations"),
            literal(0).label("rolled_cost"),
            ledger.c.cost.label("ledger_cost"),
        ).where(~exists(select(rolled.c.user_id).where(same_key)))
        return list(self.session.execute(union_all(counted, missing).limit(_ROWS)).all())

    def rollup_differences(self, checked: CheckedRange) -> list[Difference]:
        return [
            Difference(
                field="usage_rollup",
                counter_micros=int(row.rolled_cost or 0),
                ledger_micros=int(row.ledger_cost or 0),
                description=(
                    f"daily rollup of {row.day} ({row.outcome}): {int(row.rolled_generations)} "
                    f"attempt(s) costing {int(row.rolled_cost or 0)}, the ledger "
                    f"{int(row.ledger_generations)} costing {int(row.ledger_cost or 0)}"
                ),
                user_id=row.user_id,
            )
            for row in self._rollup_rows(checked)
        ]

    def credit_differences(self, checked: CheckedRange) -> list[Difference]:
        """Window rows whose credit_micros is not the sum of their credits."""
        return credit_differences(self.session, checked)

    def system_rollup_differences(self, checked: CheckedRange) -> list[Difference]:
        """The system rollups and per-user totals (migration 0009) against the
        ledger, from the checked range's UTC month on, and each dish's first
        generation (migration 0016)."""
        since = checked.since_instant
        found = []
        for check in rollup_checks(dialect_name(self.session), since):
            for row in rollup_mismatches(self.session, check, since, _ROWS):
                found.append(
                    Difference(
                        field=f"{check.table.name.removeprefix('budget_')}_rollup",
                        counter_micros=int(row.rolled_cost or 0),
                        ledger_micros=int(row.ledger_cost or 0),
                        description=(
                            f"{check.table.name} {row.kind} of {row.start}: "
                            f"{int(row.rolled_generations)} attempt(s) costing "
                            f"{int(row.rolled_cost or 0)}, the ledger "
                            f"{int(row.ledger_generations)} costing {int(row.ledger_cost or 0)}"
                        ),
                        user_id=row.user_id,
                    )
                )
        return found + dish_first_differences(self.session, since, _ROWS)

    def counts(self, checked: CheckedRange) -> tuple[int, int]:
        """How many windows and reservations the checks covered."""
        windows = self.session.scalar(
            select(func.count())
            .select_from(WindowRow)
            .where(
                or_(
                    and_(
                        WindowRow.kind == Span.DAY.value,
                        WindowRow.start_date >= checked.since_day,
                    ),
                    and_(
                        WindowRow.kind == Span.MONTH.value,
                        WindowRow.start_date >= checked.since_month,
                    ),
                )
            )
        )
        reservations = self.session.scalar(
            select(func.count())
            .select_from(ReservationRow)
            .where(ReservationRow.month_start >= checked.since_month)
        )
        return int(windows or 0), int(reservations or 0)


def _counters_off_the_ledger(
    ledger: Subquery, scope: Scope, span: Span, since: date
) -> Select[Any]:
    """Window rows whose counters are not what the ledger says."""
    counters = (
        select(WindowRow)
        .where(
            WindowRow.scope == scope.value,
            WindowRow.kind == span.value,
            WindowRow.start_date >= since,
        )
        .subquery("counters")
    )
    spent = func.coalesce(ledger.c.spent, 0)
    reserved = func.coalesce(ledger.c.reserved, 0)
    overrun = func.coalesce(ledger.c.overrun, 0)
    return (
        select(
            counters.c.subject,
            counters.c.start_date,
            counters.c.spent_micros,
            counters.c.reserved_micros,
            counters.c.overrun_micros,
            spent.label("ledger_spent"),
            reserved.label("ledger_reserved"),
            overrun.label("ledger_overrun"),
        )
        .select_from(counters)
        .outerjoin(
            ledger,
            and_(
                ledger.c.subject == counters.c.subject,
                ledger.c.start_date == counters.c.start_date,
            ),
        )
        .where(
            or_(
                counters.c.spent_micros != spent,
                counters.c.reserved_micros != reserved,
                counters.c.overrun_micros != overrun,
            )
        )
    )


def _ledger_without_counters(ledger: Subquery, scope: Scope, span: Span) -> Select[Any]:
    """Windows the ledger has money in but no window row counts."""
    return select(
        ledger.c.subject,
        ledger.c.start_date,
        literal(0).label("spent_micros"),
        literal(0).label("reserved_micros"),
        literal(0).label("overrun_micros"),
        ledger.c.spent.label("ledger_spent"),
        ledger.c.reserved.label("ledger_reserved"),
        ledger.c.overrun.label("ledger_overrun"),
    ).where(
        ~exists().where(
            WindowRow.scope == scope.value,
            WindowRow.kind == span.value,
            WindowRow.subject == ledger.c.subject,
            WindowRow.start_date == ledger.c.start_date,
        ),
        or_(ledger.c.spent != 0, ledger.c.reserved != 0, ledger.c.overrun != 0),
    )
