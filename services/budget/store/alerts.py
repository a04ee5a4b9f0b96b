"""Alerts and their silences. Statements built once.

insert_once is the whole once-only guarantee: INSERT ... ON CONFLICT DO
NOTHING on the unique key (rule, subject, window, period_key), so of any
number of transactions raising one alert, on any replica, exactly one row is
written and exactly one caller learns it was new. The same statement reads
whether a silence is in force, so raising costs one round trip.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.orm import Session

from services.budget.domain.alerts import Alert
from services.budget.store.models import AlertRow, AlertSilenceRow, table
from services.common.db import UtcDateTime

ALERTS = table(AlertRow)
SILENCES = table(AlertSilenceRow)

# PostgreSQL: the inserting transaction's id (see the stream in this module);
# SQLite serializes writers, so ids already come in commit order.
_XACT_ID = {"postgresql": "pg_current_xact_id()::text::bigint", "sqlite": "0"}


@functools.cache
def _insert_once(dialect: str) -> TextClause:
    silenced = (
        "EXISTS (SELECT 1 FROM budget_alert_silences s WHERE s.rule = :rule"
        " AND s.subject = :subject AND (s.expires_at IS NULL OR s.expires_at > :raised_at))"
    )
    # "WHERE true": SQLite needs it to parse ON CONFLICT after a SELECT; the
    # casts give PostgreSQL one type for each parameter used twice.
    sql = f"""
INSERT INTO budget_alerts (rule, subject, "window", period_key, severity, message,
                           details_json, raised_at, silenced, xact_id)
SELECT CAST(:rule AS VARCHAR), CAST(:subject AS VARCHAR), CAST(:window AS VARCHAR),
       CAST(:period_key AS VARCHAR), CAST(:severity AS VARCHAR), CAST(:message AS TEXT),
       CAST(:details_json AS TEXT), :raised_at, {silenced}, {_XACT_ID[dialect]}
WHERE true
ON CONFLICT (rule, subject, "window", period_key) DO NOTHING
RETURNING id, silenced
"""
    return text(sql).bindparams(bindparam("raised_at", type_=UtcDateTime()))


class AlertStore:
    def __init__(self, session: Session, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    def insert_once(self, alert: Alert) -> Alert | None:
        """Record the alert unless one of its rule, subject, window and period
        exists; the stored alert (its id, whether silenced) when it was new,
        None when it was not."""
        row = self.session.execute(
            _insert_once(self.dialect),
            {
                "rule": alert.rule,
                "subject": alert.subject,
                "window": alert.window.value,
                "period_key": alert.period_key,
                "severity": alert.severity.value,
                "message": alert.message,
                "details_json": json.dumps(alert.details, sort_keys=True),
                "raised_at": alert.raised_at,
            },
        ).first()
        if row is None:
            return None
        return replace(alert, id=int(row.id), silenced=bool(row.silenced))
