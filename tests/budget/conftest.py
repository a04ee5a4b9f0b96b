"""Fixtures for the budget tests: a manual clock and a running BudgetService."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from services.budget.domain.reservations import Counters
from services.budget.domain.windows import SYSTEM_SUBJECT, Scope, Span, WindowKey
from services.budget.store.models import ReservationRow, UsageRow
from services.budget.store.windows import WindowStore
from tests.support.budget_server import ManualClock, RunningBudget, running_budget

# A Tuesday in the middle of a month, well away from any window boundary.
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def budget(database_url: str, authenticator, clock: ManualClock) -> Iterator[RunningBudget]:
    with running_budget(database_url, authenticator, clock=clock) as running:
        yield running


def counters(
    budget: RunningBudget, scope: str, span: str, start: date, subject: str = ""
) -> Counters:
    """A window's counters read straight from the database."""
    key = WindowKey(Scope(scope), subject if scope == "user" else SYSTEM_SUBJECT, Span(span), start)
    with budget.app.sessions.begin() as session:
        return WindowStore(session).load_counters([key])[key]


def usage_count(budget: RunningBudget, **where: str) -> int:
    with budget.app.sessions.begin() as session:
        statement = select(func.count()).select_from(UsageRow)
        for column, value in where.items():
            statement = statement.where(getattr(UsageRow, column) == value)
        return session.scalar(statement)


def reservation_states(budget: RunningBudget) -> dict[str, str]:
    with budget.app.sessions.begin() as session:
        return dict(session.execute(select(ReservationRow.id, ReservationRow.state)).all())
