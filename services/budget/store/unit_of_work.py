"""One transaction of the budget store: the stores of every aggregate over one
session, committed when the block ends and rolled back when it raises."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from services.budget.store.abuse import AbuseStore
from services.budget.store.alert_figures import AlertFigures
from services.budget.store.alerts import AlertQueries, AlertStore
from services.budget.store.audit import AuditStore
from services.budget.store.blocks import BlockStore
from services.budget.store.credits import CreditStore
from services.budget.store.export import ExportQueries
from services.budget.store.limits import LimitsStore
from services.budget.store.near_limits import NearLimitQueries
from services.budget.store.optimization import OptimizationQueries
from services.budget.store.rates import RateStore
from services.budget.store.reconciliation import ReconciliationQueries
from services.budget.store.reservations import ReservationStore
from services.budget.store.simulation import SimulationQueries
from services.budget.store.system_metrics import SystemMetricsQueries
from services.budget.store.usage import UsageStore
from services.budget.store.webhooks import WebhookStore
from services.budget.store.windows import WindowStore
from services.common.db import begin_reading, dialect_name


class Transaction:
    """The stores of one transaction; each is built when first used."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.dialect = dialect_name(session)

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run action once this transaction has committed (never if it rolls
        back): what others may only learn of a committed change."""
        event.listen(self.session, "after_commit", lambda _session: action(), once=True)

    @cached_property
    def limits(self) -> LimitsStore:
        return LimitsStore(self.session, self.dialect)

    @cached_property
    def windows(self) -> WindowStore:
        return WindowStore(self.session)

    @cached_property
    def reservations(self) -> ReservationStore:
        return ReservationStore(self.session, self.dialect)

    @cached_property
    def usage(self) -> UsageStore:
        return UsageStore(self.session, self.dialect)

    @cached_property
    def credits(self) -> CreditStore:
        return CreditStore(self.session, self.dialect)

    @cached_property
    def near_limits(self) -> NearLimitQueries:
        return NearLimitQueries(self.session)

    @cached_property
    def export(self) -> ExportQueries:
        return ExportQueries(self.session)

    @cached_property
    def simulation(self) -> SimulationQueries:
        return SimulationQueries(self.session)

    @cached_property
    def audit(self) -> AuditStore:
        return AuditStore(self.session)

    @cached_property
    def rates(self) -> RateStore:
        return RateStore(self.session)

    @cached_property
    def blocks(self) -> BlockStore:
        return BlockStore(self.session, self.dialect)

    @cached_property
    def abuse(self) -> AbuseStore:
        return AbuseStore(self.session)

    @cached_property
    def optimization(self) -> OptimizationQueries:
        return OptimizationQueries(self.session)

    @cached_property
    def system_metrics(self) -> SystemMetricsQueries:
        return SystemMetricsQueries(self.session, self.dialect)

    @cached_property
    def alerts(self) -> AlertStore:
        return AlertStore(self.session, self.dialect)

    @cached_property
    def alert_figures(self) -> AlertFigures:
        return AlertFigures(self.session)

    @cached_property
    def alert_queries(self) -> AlertQueries:
        return AlertQueries(self.session, self.dialect)

    @cached_property
    def webhooks(self) -> WebhookStore:
        return WebhookStore(self.session, self.dialect)


class BudgetStore:
    """Opens transactions on the budget database (built once, in main)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self._sessions.begin() as session:
            yield Transaction(session)

    @contextmanager
    def reading(self) -> Iterator[Transaction]:
        """Stores for reads only, the hot reads' way (GetLimits, CheckBudget):
        no transaction round trips on PostgreSQL, no write lock on SQLite
        (services.common.db.begin_reading). Its statements may each see a
        later commit than the one before: each figure is as of its read."""
        with self._sessions.begin() as session:
            begin_reading(session)
            yield Transaction(session)

    @contextmanager
    def snapshot(self) -> Iterator[ReconciliationQueries]:
        """A read-only transaction whose every query sees one snapshot (on
        PostgreSQL REPEATABLE READ; SQLite's transactions are serial anyway)."""
        with self._sessions.begin() as session:
            if dialect_name(session) == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield ReconciliationQueries(session)
