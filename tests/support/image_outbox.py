"""Reading ImageService's settlement outbox in tests (test-only: the service
itself never lists its rows)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.image.store.models import PendingSettlement


def pending_settlements(session: Session) -> list[PendingSettlement]:
    """Every outbox row, abandoned ones too, oldest first."""
    return list(session.scalars(select(PendingSettlement).order_by(PendingSettlement.id)))
