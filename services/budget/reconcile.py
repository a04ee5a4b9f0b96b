"""Reconciliation: prove the window counters equal the ledger, and say where
they do not.

For every window (user and system, day and month):

- spent equals the cost of the usage records of the reservations taken in it;
- reserved equals the amount of its reservations still held;
- overrun equals the spend no hold covered (late commits, and commits above
  their hold).

And for every reservation: a committed one has exactly one usage record, with
its committed cost; any other has no record with a cost. No usage record
carries a cost without a reservation. The daily rollup GetUsageStats reads
equals the ledger it rolls up. Each check is one aggregate query; only
the differences leave the database. Read-only.

Also a command for cron or ops, reading the service's own settings:

    python -m services.budget.reconcile [--since YYYY-MM-DD]

prints the result as JSON and exits 1 when there is a difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Date,
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
from sqlalchemy.orm import Session, sessionmaker

from services.budget.domain import ReservationState
from services.budget.models import ReservationRow, UsageDailyRow, UsageRow, WindowRow
from services.budget.windows import SYSTEM_SUBJECT, Scope, Span, local_date, local_midnight

MAX_DIFFERENCES = 1000
COMMITTED = ReservationState.COMMITTED.value
HELD = ReservationState.HELD.value


@dataclass(frozen=True)
class Difference:
    field: str
    counter_micros: int
    ledger_micros: int
    description: str
    scope: Scope | None = None
    span: Span | None = None
    user_id: str = ""
    start_date: date | None = None
    reservation_id: str = ""


@dataclass(frozen=True)
class Reconciliation:
    windows_checked: int
    reservations_checked: int
    differences: list[Difference]
    truncated: bool

    @property
    def consistent(self) -> bool:
        return not self.differences


class Reconciler:
    def __init__(self, sessions: sessionmaker, zone: ZoneInfo) -> None:
        self._sessions = sessions
        self.zone = zone

    def run(self, since: datetime | None = None) -> Reconciliation:
        """Check windows beginning on or after since's local date (all: None)."""
        since_day = local_date(since, self.zone) if since else date.min
        since_month = since_day.replace(day=1)
        with self._sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                # Every check reads one snapshot, so a busy service cannot
                # show a difference that is only a commit in flight.
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            checks = _Checks(session, since_day, since_month, self.zone)
            differences: list[Difference] = []
            for scope in Scope:
                for span in Span:
                    differences += checks.windows(scope, span)
            differences += checks.reservations()
            differences += checks.unreserved_spend()
            differences += checks.rollup()
            windows, reservations = checks.counts()
        return Reconciliation(
            windows_checked=windows,
            reservations_checked=reservations,
            differences=differences[:MAX_DIFFERENCES],
            truncated=len(differences) > MAX_DIFFERENCES,
        )


class _Checks:
    def __init__(self, session: Session, since_day: date, since_month: date, zone: ZoneInfo):
        self.session = session
        self.since_day = since_day
        self.since_month = since_month
        # Records of reservations in the checked windows were written after
        # those windows began.
        self.since_instant = local_midnight(since_month, zone) if since_month > date.min else None

    def _per_reservation(self):  # type: ignore[no-untyped-def]
        """Each reservation with the cost and count of its usage records."""
        records = select(
            UsageRow.reservation_id,
            func.sum(UsageRow.cost_micros).label("cost"),
            func.count().label("records"),
        ).where(UsageRow.reservation_id.is_not(None))
        if self.since_instant is not None:
            records = records.where(UsageRow.created_at >= self.since_instant)
        records = records.group_by(UsageRow.reservation_id).subquery("records")
        committed = ReservationRow.state == COMMITTED
        statement = select(
            ReservationRow.id,
            ReservationRow.user_id,
            ReservationRow.day_start,
            ReservationRow.month_start,
            ReservationRow.state,
            ReservationRow.amount_micros,
            ReservationRow.committed_micros,
            func.coalesce(records.c.cost, 0).label("ledger_cost"),
            func.coalesce(records.c.records, 0).label("records"),
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
        ).outerjoin(records, records.c.reservation_id == ReservationRow.id)
        if self.since_instant is not None:
            statement = statement.where(ReservationRow.month_start >= self.since_month)
        return statement.subquery("per_reservation")

    def windows(self, scope: Scope, span: Span) -> list[Difference]:
        per = self._per_reservation()
        start = per.c.day_start if span is Span.DAY else per.c.month_start
        since = self.since_day if span is Span.DAY else self.since_month
        subject = per.c.user_id if scope is Scope.USER else literal(SYSTEM_SUBJECT)
        group = [per.c.user_id, start] if scope is Scope.USER else [start]
        ledger = (
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
        with_counters = (
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
        without_counters = select(
            ledger.c.subject,
            ledger.c.start_date,
            literal(0).label("spent_micros"),
            literal(0).label("reserved_micros"),
            literal(0).label("overrun_micros"),
            ledger.c.spent,
            ledger.c.reserved,
            ledger.c.overrun,
        ).where(
            ~exists().where(
                WindowRow.scope == scope.value,
                WindowRow.kind == span.value,
                WindowRow.subject == ledger.c.subject,
                WindowRow.start_date == ledger.c.start_date,
            ),
            or_(ledger.c.spent != 0, ledger.c.reserved != 0, ledger.c.overrun != 0),
        )
        rows = self.session.execute(
            union_all(with_counters, without_counters).limit(MAX_DIFFERENCES + 1)
        ).all()
        found = []
        name = f"{scope}_{'daily' if span is Span.DAY else 'monthly'}"
        for row in rows:
            start_date = row[1] if isinstance(row[1], date) else date.fromisoformat(row[1])
            for field, counter, expected in (
                ("spent_micros", row[2], row[5]),
                ("reserved_micros", row[3], row[6]),
                ("overrun_micros", row[4], row[7]),
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
                            user_id=row[0] if scope is Scope.USER else "",
                            start_date=start_date,
                        )
                    )
        return found

    def reservations(self) -> list[Difference]:
        per = self._per_reservation()
        committed = per.c.state == COMMITTED
        rows = self.session.execute(
            select(per.c.id, per.c.user_id, per.c.state, per.c.committed_micros, per.c.ledger_cost)
            .add_columns(per.c.records)
            .where(
                per.c.day_start >= self.since_day,
                or_(
                    and_(
                        committed,
                        or_(per.c.records != 1, per.c.ledger_cost != per.c.committed_micros),
                    ),
                    and_(~committed, per.c.ledger_cost != 0),
                ),
            )
            .limit(MAX_DIFFERENCES + 1)
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

    def unreserved_spend(self) -> list[Difference]:
        """Usage records with a cost but no reservation: spend no window counted."""
        statement = select(UsageRow.request_id, UsageRow.user_id, UsageRow.cost_micros).where(
            UsageRow.reservation_id.is_(None), UsageRow.cost_micros != 0
        )
        if self.since_instant is not None:
            statement = statement.where(UsageRow.created_at >= self.since_instant)
        rows = self.session.execute(statement.limit(MAX_DIFFERENCES + 1)).all()
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

    def rollup(self) -> list[Difference]:
        """Each rollup row against the ledger's records of its user, UTC day
        and kind; a ledger group without its rollup row counts too."""
        u, d = UsageRow, UsageDailyRow
        if self.session.get_bind().dialect.name == "postgresql":
            utc_day = cast(func.timezone("UTC", u.created_at), Date)
        else:
            utc_day = func.date(u.created_at)
        kinds = (u.model, u.size, u.quality, u.outcome)
        ledger = select(
            u.user_id,
            utc_day.label("day"),
            *kinds,
            func.count().label("generations"),
            func.sum(u.cost_micros).label("cost"),
            func.count().filter(u.success.is_(True)).label("successful"),
            func.count().filter(u.cached.is_(True)).label("cache_hits"),
            func.sum(u.cost_saved_micros).label("saved"),
        )
        rolled = select(d)
        if self.since_instant is not None:
            since = self.since_instant.astimezone(UTC)
            ledger = ledger.where(
                u.created_at >= since.replace(hour=0, minute=0, second=0, microsecond=0)
            )
            rolled = rolled.where(d.day >= since.date())
        ledger = ledger.group_by(u.user_id, utc_day, *kinds).subquery("ledger")
        rolled = rolled.subquery("rolled")
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
                rolled.c.generations,
                func.coalesce(ledger.c.generations, 0),
                rolled.c.cost_micros,
                func.coalesce(ledger.c.cost, 0),
            )
            .select_from(rolled.outerjoin(ledger, same_key))
            .where(or_(*(mine != func.coalesce(theirs, 0) for mine, theirs in pairs)))
        )
        missing = select(
            ledger.c.user_id,
            ledger.c.day,
            ledger.c.outcome,
            literal(0),
            ledger.c.generations,
            literal(0),
            ledger.c.cost,
        ).where(~exists(select(rolled.c.user_id).where(same_key)))
        rows = self.session.execute(union_all(counted, missing).limit(MAX_DIFFERENCES + 1)).all()
        return [
            Difference(
                field="usage_rollup",
                counter_micros=int(row[5] or 0),
                ledger_micros=int(row[6] or 0),
                description=(
                    f"daily rollup of {row[1]} ({row[2]}): {int(row[3])} attempt(s) costing "
                    f"{int(row[5] or 0)}, the ledger {int(row[4])} costing {int(row[6] or 0)}"
                ),
                user_id=row[0],
            )
            for row in rows
        ]

    def counts(self) -> tuple[int, int]:
        windows = self.session.scalar(
            select(func.count())
            .select_from(WindowRow)
            .where(
                or_(
                    and_(WindowRow.kind == Span.DAY.value, WindowRow.start_date >= self.since_day),
                    and_(
                        WindowRow.kind == Span.MONTH.value,
                        WindowRow.start_date >= self.since_month,
                    ),
                )
            )
        )
        reservations = self.session.scalar(
            select(func.count())
            .select_from(ReservationRow)
            .where(ReservationRow.month_start >= self.since_month)
        )
        return int(windows or 0), int(reservations or 0)


def main(argv: list[str] | None = None) -> int:
    from services.budget.settings import BudgetSettings
    from services.common.config import ConfigError
    from services.common.db import create_db_engine, create_sessions

    parser = argparse.ArgumentParser(
        prog="python -m services.budget.reconcile",
        description="Check that the budget counters equal the usage ledger.",
    )
    parser.add_argument("--since", type=date.fromisoformat, help="first local date to check")
    args = parser.parse_args(argv)
    try:
        settings = BudgetSettings.from_env(os.environ)
    except ConfigError as exc:
        print(f"reconcile: {exc}", file=sys.stderr)
        return 2
    engine = create_db_engine(settings.database_url, pool_size=1)
    try:
        since = local_midnight(args.since, settings.time_zone) if args.since else None
        result = Reconciler(create_sessions(engine), settings.time_zone).run(since)
    finally:
        engine.dispose()
    print(
        json.dumps(
            {
                "consistent": result.consistent,
                "windows_checked": result.windows_checked,
                "reservations_checked": result.reservations_checked,
                "truncated": result.truncated,
                "differences": [asdict(d) for d in result.differences],
            },
            default=str,
            indent=2,
        )
    )
    return 0 if result.consistent else 1


if __name__ == "__main__":
    sys.exit(main())
