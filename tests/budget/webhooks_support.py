"""Helpers of the alert webhook tests: destinations, settings, alerts raised
through a real AlertRaiser (whose transaction writes the deliveries), and the
outbox's rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count

from sqlalchemy import select

from services.budget.domain.alerts import Alert, AlertWindow, Severity
from services.budget.domain.webhooks import PayloadFormat, WebhookDestination
from services.budget.main import alert_parts
from services.budget.settings import BudgetSettings, WebhookSettings
from services.budget.store.models import WebhookDeliveryRow
from services.budget.store.unit_of_work import BudgetStore
from services.common.clock import Clock
from services.common.telemetry import Metrics
from tests.support.budget_server import RunningBudget
from tests.support.webhook_receiver import WebhookReceiver

SECRET = "whsec-0123456789abcdef"
_periods = count()


def chat(receiver: WebhookReceiver, **filters: object) -> WebhookDestination:
    return WebhookDestination("chat", receiver.url("chat"), PayloadFormat.SLACK, **filters)  # type: ignore[arg-type]


def pager(receiver: WebhookReceiver, **filters: object) -> WebhookDestination:
    return WebhookDestination(
        "pager",
        receiver.url("pager"),
        PayloadFormat.JSON,
        SECRET,
        **filters,  # type: ignore[arg-type]
    )


def hooks(
    *destinations: WebhookDestination, interval: float = 0.0, timeout: float = 2.0
) -> WebhookSettings:
    """Webhook settings for running_budget(webhooks=...); interval 0: the
    test runs the deliverer itself (budget.app.webhooks.run_once())."""
    return WebhookSettings(tuple(destinations), interval, timeout, 3600)


class Raiser:
    """Raises alerts as a replica with these settings would, on a store."""

    def __init__(self, settings: BudgetSettings, store: BudgetStore, clock: Clock) -> None:
        self.raiser = alert_parts(settings, clock, Metrics("budget")).raiser
        self.store = store

    @classmethod
    def of(cls, budget: RunningBudget, clock: Clock) -> Raiser:
        return cls(budget.app.settings, BudgetStore(budget.app.sessions), clock)

    def __call__(self, now: datetime, **fields: object) -> Alert:
        with self.store.transaction() as tx:
            [stored] = self.raiser.raise_alerts(tx, [new_alert(now, **fields)])  # type: ignore[arg-type]
        return stored


def new_alert(
    now: datetime,
    *,
    rule: str = "system_limit_80",
    subject: str = "",
    severity: Severity = Severity.WARNING,
) -> Alert:
    """An alert of a new period each call."""
    return Alert(
        rule=rule,
        subject=subject,
        window=AlertWindow.DAILY,
        period_key=f"period-{next(_periods)}",
        severity=severity,
        message=f"{rule} for {subject or 'the system'}",
        raised_at=now,
        details={"spent_micros": "80000"},
    )


def store_of(budget: RunningBudget) -> BudgetStore:
    return BudgetStore(budget.app.sessions)


def silence(store: BudgetStore, rule: str, subject: str, now: datetime) -> None:
    with store.transaction() as tx:
        tx.alert_queries.store_silence(rule, subject, "ops", now, now + timedelta(days=1))


def deliveries(store: BudgetStore) -> list[WebhookDeliveryRow]:
    with store.transaction() as tx:
        return list(tx.session.scalars(select(WebhookDeliveryRow).order_by(WebhookDeliveryRow.id)))
