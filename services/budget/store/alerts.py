"""Alerts and their silences. Statements built once.

insert_once is the whole once-only guarantee: INSERT ... ON CONFLICT DO
NOTHING on the unique key (rule, subject, window, period_key), so of any
number of transactions raising one alert, on any replica, exactly one row is
written and exactly one caller learns it was new. The same statement reads
whether a silence is in force, so raising costs one round trip.

The stream (WatchAlerts) must never skip a row committed late. On
PostgreSQL ids come from a sequence when the row is inserted, not when it
commits: a transaction may hold id 5 uncommitted while id 6 is already
visible, so "id > last seen" would skip 5 for good. Each row therefore
records the transaction that inserted it (xact_id), and a stream reads only
rows of transactions that have ended, in (xact_id, id) order, with the
cursor (xact_id, id) of the last row sent. The horizon is the oldest
transaction still writing in this database (pg_stat_activity.backend_xid,
widened to 64 bits), else the next transaction id to be assigned, read in
its own statement before the rows are read (READ COMMITTED: the rows'
statement sees every transaction that had ended by then). Every transaction
below the horizon has ended, so the rows below it are final: a later read
only adds rows above everything already sent. A long write transaction in
this database delays the stream, never makes it skip; read-only transactions
and other databases' do not count (the cluster-wide pg_snapshot_xmin would
let any of them stall it; prepared transactions are not counted, and the
service never prepares one). SQLite runs one writer at a time, so there
xact_id is 0 and the id order is the commit order.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from datetime import datetime

from sqlalchemy import (
    Select,
    TextClause,
    bindparam,
    delete,
    select,
    text,
    tuple_,
)
from sqlalchemy.orm import Session

from services.budget.domain.alerts import Alert, AlertFilter, AlertWindow, Severity, StreamCursor
from services.budget.store.models import AlertRow, AlertSilenceRow, table
from services.common.db import UtcDateTime, insert_for

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


def _listing(where: AlertFilter) -> Select[AlertRow]:
    statement = select(AlertRow)
    if where.subject is not None:
        statement = statement.where(AlertRow.subject == where.subject)
    if where.rule:
        statement = statement.where(AlertRow.rule == where.rule)
    if where.severity:
        statement = statement.where(AlertRow.severity == where.severity)
    if where.start is not None:
        statement = statement.where(AlertRow.raised_at >= where.start)
    if where.end is not None:
        statement = statement.where(AlertRow.raised_at < where.end)
    return statement


class AlertQueries:
    """Reading alerts, and the silences."""

    def __init__(self, session: Session, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    def load_page(self, where: AlertFilter, before_id: int | None, limit: int) -> list[Alert]:
        """Up to limit alerts, newest first, below before_id."""
        statement = _listing(where)
        if before_id is not None:
            statement = statement.where(AlertRow.id < before_id)
        statement = statement.order_by(AlertRow.id.desc()).limit(limit)
        return [_alert(row) for row in self.session.scalars(statement)]

    def load_stream(
        self, subject: str | None, after: StreamCursor, limit: int
    ) -> list[tuple[Alert, StreamCursor]]:
        """Up to limit unsilenced alerts of ended transactions after the cursor,
        in stream order (see the module's docstring), of one subject or all."""
        statement = select(AlertRow).where(
            AlertRow.silenced.is_(False),
            tuple_(AlertRow.xact_id, AlertRow.id) > tuple_(after.xact_id, after.id),
        )
        if self.dialect == "postgresql":
            horizon = int(self.session.scalar(_HORIZON) or 0)  # first, in its own statement
            statement = statement.where(AlertRow.xact_id < horizon)
        if subject is not None:
            statement = statement.where(AlertRow.subject == subject)
        statement = statement.order_by(AlertRow.xact_id, AlertRow.id).limit(limit)
        return [
            (_alert(row), StreamCursor(row.xact_id, row.id))
            for row in self.session.scalars(statement)
        ]

    def load_stream_end(self, subject: str | None) -> StreamCursor:
        """The cursor after the newest alert committed now ("from now on"):
        past the horizon too, so no alert already visible is sent. (An alert
        whose transaction began earlier and commits later is not sent to a
        stream started without a cursor; one resumed with a cursor misses
        nothing.)"""
        statement = select(AlertRow.xact_id, AlertRow.id).where(AlertRow.silenced.is_(False))
        if subject is not None:
            statement = statement.where(AlertRow.subject == subject)
        row = self.session.execute(
            statement.order_by(AlertRow.xact_id.desc(), AlertRow.id.desc()).limit(1)
        ).first()
        return StreamCursor(row.xact_id, row.id) if row else StreamCursor()

    def store_silence(
        self, rule: str, subject: str, created_by: str, now: datetime, until: datetime | None
    ) -> None:
        """Silence a rule for a subject (replacing a silence of both)."""
        statement = insert_for(self.dialect, SILENCES).values(
            rule=rule, subject=subject, created_by=created_by, created_at=now, expires_at=until
        )
        self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[SILENCES.c.rule, SILENCES.c.subject],
                set_={"created_by": created_by, "created_at": now, "expires_at": until},
            )
        )

    def delete_silence(self, rule: str, subject: str) -> bool:
        deleted = self.session.execute(
            delete(AlertSilenceRow)
            .where(AlertSilenceRow.rule == rule, AlertSilenceRow.subject == subject)
            .returning(AlertSilenceRow.rule)
        ).first()
        return deleted is not None


# Transactions below this one have all ended (PostgreSQL): the oldest
# backend_xid of this database (a 32-bit xid, given the epoch of the next
# one and one epoch less if that puts it in the future), else the next xid.
_HORIZON = text("""
WITH next AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xid)
SELECT LEAST(next.xid, MIN(
    (next.xid >> 32 << 32) + a.backend_xid::text::bigint
    - CASE WHEN (next.xid >> 32 << 32) + a.backend_xid::text::bigint > next.xid
           THEN 4294967296 ELSE 0 END))
FROM next LEFT JOIN pg_stat_activity a
  ON a.datname = current_database() AND a.backend_xid IS NOT NULL
GROUP BY next.xid
""")


def _alert(row: AlertRow) -> Alert:
    return Alert(
        id=row.id,
        rule=row.rule,
        subject=row.subject,
        window=AlertWindow(row.window),
        period_key=row.period_key,
        severity=Severity(row.severity),
        message=row.message,
        raised_at=row.raised_at,
        details=json.loads(row.details_json),
        silenced=row.silenced,
    )
