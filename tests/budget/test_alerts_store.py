"""The alerts table: an alert is recorded once per rule, subject, window and
period, and a silence in force marks it silenced."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from services.budget.domain.alerts import Alert, AlertWindow, Severity
from services.budget.store.models import AlertSilenceRow
from services.budget.store.unit_of_work import BudgetStore
from tests.budget.conftest import T0


def _alert(period_key: str = "2026-03-10", subject: str = "u1") -> Alert:
    return Alert(
        rule="user_limit_80",
        subject=subject,
        window=AlertWindow.DAILY,
        period_key=period_key,
        severity=Severity.WARNING,
        message="u1 has spent 80% of its daily limit",
        raised_at=T0,
        details={"limit_micros": "100"},
    )


def test_an_alert_is_inserted_once_per_rule_subject_window_and_period(budget) -> None:
    store = BudgetStore(budget.app.sessions)
    with store.transaction() as uow:
        first = uow.alerts.insert_once(_alert())
        again = uow.alerts.insert_once(_alert())
    with store.transaction() as uow:
        later = uow.alerts.insert_once(_alert())
        next_day = uow.alerts.insert_once(_alert(period_key="2026-03-11"))
    assert first is not None and first.id > 0 and not first.silenced
    assert again is None and later is None
    assert next_day is not None and next_day.id > first.id


def test_an_alert_raised_under_a_silence_in_force_is_recorded_silenced(budget) -> None:
    store = BudgetStore(budget.app.sessions)
    with store.transaction() as uow:
        uow.session.add_all(
            [
                AlertSilenceRow(rule="user_limit_80", subject="u1", created_by="u1", created_at=T0),
                AlertSilenceRow(
                    rule="user_limit_80",
                    subject="u2",
                    created_by="admin",
                    created_at=T0,
                    expires_at=T0 - timedelta(seconds=1),
                ),
            ]
        )
    with store.transaction() as uow:
        silenced = uow.alerts.insert_once(_alert(subject="u1"))
        expired = uow.alerts.insert_once(_alert(subject="u2"))
    assert silenced is not None and silenced.silenced
    assert expired is not None and not expired.silenced


def test_of_many_transactions_raising_one_alert_at_once_exactly_one_inserts(budget) -> None:
    store = BudgetStore(budget.app.sessions)
    start = threading.Barrier(8)

    def raise_once(_: int) -> bool:
        start.wait()
        with store.transaction() as uow:
            return uow.alerts.insert_once(_alert()) is not None

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(raise_once, range(8)))
    assert results.count(True) == 1
