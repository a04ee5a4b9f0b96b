"""The figures the alert evaluator judges: the last hours of the whole
ledger (an index range on created_at), and users' days from the daily
rollup (an index range on day, then each user's rows by its key)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from services.budget.domain.alert_rules import RecentAttempts, UserDay
from services.budget.domain.usage import Outcome
from services.budget.store.models import UsageDailyRow, UsageRow
from services.budget.store.windows import as_date

_ATTEMPTS = (Outcome.GENERATED, Outcome.FAILED, Outcome.FALLBACK, Outcome.ABANDONED)
_FAILURES = (Outcome.FAILED, Outcome.FALLBACK, Outcome.ABANDONED)
_HITS = (Outcome.CACHE_HIT_EXACT, Outcome.CACHE_HIT_SIMILAR)
# ImageService writes a refusal's reason first ("<REASON>: <message>").
_CONTENT_POLICY = "CONTENT_POLICY_VIOLATION%"


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


# A rollup row's generated images (its count when its outcome is generated).
_GENERATED = case(
    (UsageDailyRow.outcome == Outcome.GENERATED.value, UsageDailyRow.generations), else_=0
)


class AlertFigures:
    def __init__(self, session: Session) -> None:
        self.session = session

    def spend_since(self, since: datetime) -> int:
        """The whole system's cost since an instant."""
        return int(
            self.session.scalar(
                select(func.coalesce(func.sum(UsageRow.cost_micros), 0)).where(
                    UsageRow.created_at >= since
                )
            )
            or 0
        )

    def user_spend_since(self, user_id: str, since: datetime) -> int:
        """A user's cost since an instant (its index range of the ledger)."""
        return int(
            self.session.scalar(
                select(func.coalesce(func.sum(UsageRow.cost_micros), 0)).where(
                    UsageRow.user_id == user_id, UsageRow.created_at >= since
                )
            )
            or 0
        )

    def spenders_since(self, since: datetime) -> dict[str, int]:
        """Each user's cost since an instant, users who spent only: one index
        range of the ledger's created_at, grouped by user."""
        rows = self.session.execute(
            select(UsageRow.user_id, func.sum(UsageRow.cost_micros))
            .where(UsageRow.created_at >= since, UsageRow.cost_micros > 0)
            .group_by(UsageRow.user_id)
        ).all()
        return {row[0]: int(row[1]) for row in rows}

    def attempts_since(self, since: datetime) -> RecentAttempts:
        policy = UsageRow.error_message.like(_CONTENT_POLICY)
        row = self.session.execute(
            select(
                _count(UsageRow.outcome.in_(_ATTEMPTS)),
                _count(UsageRow.outcome.in_(_FAILURES) & ~policy),
                _count(policy),
                _count(UsageRow.outcome.in_(_HITS)),
            ).where(UsageRow.created_at >= since)
        ).one()
        return RecentAttempts(*(int(value) for value in row))

    def cache_hits_between(self, first: date, end: date) -> tuple[int, int]:
        """(cache hits, lookups) of the days [first, end): every record but refusals."""
        row = self.session.execute(
            select(
                func.coalesce(func.sum(UsageDailyRow.cache_hits), 0),
                func.coalesce(func.sum(UsageDailyRow.generations), 0),
            ).where(
                UsageDailyRow.day >= first,
                UsageDailyRow.day < end,
                UsageDailyRow.outcome != Outcome.REFUSED.value,
            )
        ).one()
        return int(row[0]), int(row[1])

    def busy_users(self, day: date, cost_floor: int, generations_floor: int) -> list[UserDay]:
        """Users whose day reached either floor."""
        cost = func.sum(UsageDailyRow.cost_micros)
        generated = func.sum(
            case(
                (UsageDailyRow.outcome == Outcome.GENERATED.value, UsageDailyRow.generations),
                else_=0,
            )
        )
        rows = self.session.execute(
            select(UsageDailyRow.user_id, cost, generated)
            .where(UsageDailyRow.day == day)
            .group_by(UsageDailyRow.user_id)
            .having((cost >= cost_floor) | (generated >= generations_floor))
        ).all()
        return [UserDay(row[0], int(row[1]), int(row[2])) for row in rows]

    def user_days(self, user_id: str, first: date, end: date) -> dict[date, UserDay]:
        """A user's cost and generated images of each day in [first, end)."""
        rows = self.session.execute(
            select(
                UsageDailyRow.day,
                func.sum(UsageDailyRow.cost_micros),
                func.sum(
                    case(
                        (
                            UsageDailyRow.outcome == Outcome.GENERATED.value,
                            UsageDailyRow.generations,
                        ),
                        else_=0,
                    )
                ),
            )
            .where(
                UsageDailyRow.user_id == user_id,
                UsageDailyRow.day >= first,
                UsageDailyRow.day < end,
            )
            .group_by(UsageDailyRow.day)
        ).all()
        return {as_date(row[0]): UserDay(user_id, int(row[1]), int(row[2])) for row in rows}
