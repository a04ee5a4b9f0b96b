"""The alert webhooks' outbox: one row per (alert, destination).

Queuing. The rows of an alert are written in the transaction that raises it
(app.alerts calls app.webhooks' outbox), so an alert is never committed
without them, whatever happens to the service or the receiver afterwards.
The unique (alert_id, destination) makes a second write of one a no-op.

Claiming. One UPDATE takes the oldest due row (FOR UPDATE SKIP LOCKED in its
subquery on PostgreSQL, so two deliverers never take the same row), moves
next_attempt_at past the lease and writes a fresh lease_token; only that token
may record how the attempt ended. A deliverer that dies leaves the row to be
claimed again when its lease ends.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from services.budget.store.models import WebhookDeliveryRow, insert_or_skip, table

DELIVERIES = table(WebhookDeliveryRow)
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class QueuedDelivery:
    delivery_id: str
    alert_id: int
    destination: str
    body: bytes


@dataclass(frozen=True)
class ClaimedDelivery:
    """A row this deliverer holds until lease ends; attempts counts this one."""

    row_id: int
    delivery_id: str
    destination: str
    body: bytes
    attempts: int
    lease_token: str


class WebhookStore:
    def __init__(self, session: Session, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    # -- queuing

    def queue(self, deliveries: Iterable[QueuedDelivery], now: datetime) -> None:
        """A pending row for each delivery, due now, unless its (alert,
        destination) has one already."""
        rows = [
            {
                "delivery_id": d.delivery_id,
                "alert_id": d.alert_id,
                "destination": d.destination,
                "body": d.body.decode(),
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": "",
                "created_at": now,
            }
            for d in deliveries
        ]
        if rows:
            statement = insert_or_skip(
                self.dialect, DELIVERIES, DELIVERIES.c.alert_id, DELIVERIES.c.destination
            )
            self.session.execute(statement, rows)

    # -- claiming and recording attempts

    def claim_due(
        self, destinations: Collection[str], now: datetime, lease_until: datetime, token: str
    ) -> ClaimedDelivery | None:
        """Take the pending row of these destinations due longest ago, if any."""
        if not destinations:
            return None
        oldest_due = (
            select(WebhookDeliveryRow.id)
            .where(
                WebhookDeliveryRow.delivered_at.is_(None),
                WebhookDeliveryRow.next_attempt_at <= now,
                WebhookDeliveryRow.destination.in_(list(destinations)),
            )
            .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        row = self.session.execute(
            update(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.id == oldest_due)
            .values(
                attempts=WebhookDeliveryRow.attempts + 1,
                next_attempt_at=lease_until,
                lease_token=token,
            )
            .returning(
                WebhookDeliveryRow.id,
                WebhookDeliveryRow.delivery_id,
                WebhookDeliveryRow.destination,
                WebhookDeliveryRow.body,
                WebhookDeliveryRow.attempts,
            )
            .execution_options(synchronize_session=False)
        ).first()
        if row is None:
            return None
        return ClaimedDelivery(
            row.id, row.delivery_id, row.destination, row.body.encode(), row.attempts, token
        )

    def record_delivered(self, claimed: ClaimedDelivery, now: datetime) -> bool:
        """Mark the row delivered; False when the claim was lost (its lease
        ended and another deliverer took the row)."""
        return self._end_claim(claimed, delivered_at=now, last_error="")

    def record_failed(self, claimed: ClaimedDelivery, error: str, retry_at: datetime) -> bool:
        """Leave the row pending, due at retry_at."""
        return self._end_claim(
            claimed, next_attempt_at=retry_at, last_error=error[:MAX_ERROR_CHARS]
        )

    def _end_claim(self, claimed: ClaimedDelivery, **values: Any) -> bool:
        # An UPDATE's result is a CursorResult (it has rowcount); execute() is typed wider.
        ended = cast(
            CursorResult[Any],
            self.session.execute(
                update(WebhookDeliveryRow)
                .where(
                    WebhookDeliveryRow.id == claimed.row_id,
                    WebhookDeliveryRow.lease_token == claimed.lease_token,
                    WebhookDeliveryRow.delivered_at.is_(None),
                )
                .values(lease_token=None, **values)
                .execution_options(synchronize_session=False)
            ),
        )
        return ended.rowcount == 1

    # -- reading

    def backlog(self, destinations: Collection[str]) -> tuple[int, datetime | None]:
        """Pending rows of these destinations and the oldest one's created_at."""
        row = self.session.execute(
            select(func.count(), func.min(WebhookDeliveryRow.created_at)).where(
                WebhookDeliveryRow.delivered_at.is_(None),
                WebhookDeliveryRow.destination.in_(list(destinations)),
            )
        ).one()
        return int(row[0]), row[1]
