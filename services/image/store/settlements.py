"""The settlement outbox's table: every commit and release owed to BudgetService,
kept until BudgetService acknowledges it.

Several replicas may settle at once: a settler claims a row with one
conditional UPDATE that bumps `attempts` (the row's version) and moves
next_attempt_at past the claim period, and works only on rows it claimed. The
repository works in the session it is given; the caller owns the transaction.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from services.image.domain.accounting import Outcome, Usage, UsageKind
from services.image.domain.settlement import CLAIM_PERIOD, Kind, Settlement, backoff
from services.image.store.models import PendingSettlement

MAX_ERROR_CHARS = 500


def usage_to_json(usage: Usage) -> dict[str, Any]:
    return {
        name: (str(value) if name == "outcome" else value)
        for name, value in dataclasses.asdict(usage).items()
    }


def usage_from_json(data: dict[str, Any]) -> Usage:
    known = {field.name for field in dataclasses.fields(Usage)}
    values = {name: value for name, value in data.items() if name in known}
    values["outcome"] = Outcome(values.get("outcome", Outcome.FAILED))
    values["kind"] = UsageKind(values.get("kind", UsageKind.IMAGE))
    return Usage(**values)


def settlement_of(row: PendingSettlement) -> Settlement:
    return Settlement(
        kind=Kind(row.kind),
        reservation_id=row.reservation_id,
        actual_cost_micros=row.actual_cost_micros,
        usage=usage_from_json(row.usage),
        row_id=row.id,
        attempts=row.attempts,
    )


_INSERT = insert(PendingSettlement).returning(PendingSettlement.id)


def insert_claimed(connection: Connection, settlement: Settlement, now: datetime) -> Settlement:
    """SettlementRepository.add in one Core statement (a cache hit's record, on
    the hot path): the row claimed by its writer; the settlement with its row id."""
    row_id = connection.execute(
        _INSERT,
        {
            "reservation_id": settlement.reservation_id,
            "kind": settlement.kind.value,
            "actual_cost_micros": settlement.actual_cost_micros,
            "usage": usage_to_json(settlement.usage),
            "attempts": 1,
            "next_attempt_at": now + CLAIM_PERIOD,
            "last_error": "",
            "created_at": now,
        },
    ).scalar_one()
    return dataclasses.replace(settlement, row_id=row_id, attempts=1)


class SettlementRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, settlement: Settlement, now: datetime) -> Settlement:
        """A row claimed by its writer (attempts 1, next attempt after the claim
        period): the request path tries it at once, the settler only if that
        attempt never reports back. The settlement with its row id."""
        row = PendingSettlement(
            reservation_id=settlement.reservation_id,
            kind=settlement.kind.value,
            actual_cost_micros=settlement.actual_cost_micros,
            usage=usage_to_json(settlement.usage),
            attempts=1,
            next_attempt_at=now + CLAIM_PERIOD,
            last_error="",
            created_at=now,
        )
        self.session.add(row)
        self.session.flush()
        return dataclasses.replace(settlement, row_id=row.id, attempts=1)

    def due(self, now: datetime, after_id: int, limit: int) -> list[tuple[int, int]]:
        """(id, attempts) of the live rows due at now, by id, after after_id."""
        rows = self.session.execute(
            select(PendingSettlement.id, PendingSettlement.attempts)
            .where(
                PendingSettlement.abandoned_at.is_(None),
                PendingSettlement.next_attempt_at <= now,
                PendingSettlement.id > after_id,
            )
            .order_by(PendingSettlement.id)
            .limit(limit)
        )
        return [(row.id, row.attempts) for row in rows]

    def claim(self, row_id: int, seen_attempts: int, now: datetime) -> Settlement | None:
        """Take the row when it is still due and nobody took it since it was read:
        one statement, so of two settlers exactly one wins."""
        # An UPDATE's result is a CursorResult (it has rowcount); execute() is typed wider.
        claimed = cast(
            CursorResult[Any],
            self.session.execute(
                update(PendingSettlement)
                .where(
                    PendingSettlement.id == row_id,
                    PendingSettlement.attempts == seen_attempts,
                    PendingSettlement.abandoned_at.is_(None),
                    PendingSettlement.next_attempt_at <= now,
                )
                .values(attempts=seen_attempts + 1, next_attempt_at=now + CLAIM_PERIOD)
                .execution_options(synchronize_session=False)
            ),
        )
        if claimed.rowcount != 1:
            return None
        row = self.session.get(PendingSettlement, row_id, populate_existing=True)
        return settlement_of(row) if row is not None else None

    def acknowledged(self, row_id: int) -> None:
        self.session.execute(delete(PendingSettlement).where(PendingSettlement.id == row_id))

    def acknowledged_many(self, row_ids: list[int]) -> None:
        """Delete the rows of a batch BudgetService took: one statement."""
        if row_ids:
            self.session.execute(delete(PendingSettlement).where(PendingSettlement.id.in_(row_ids)))

    def failed(self, row_id: int, attempts: int, error: str, now: datetime) -> None:
        """Schedule the next attempt, unless another settler took the row over."""
        self.session.execute(
            update(PendingSettlement)
            .where(PendingSettlement.id == row_id, PendingSettlement.attempts == attempts)
            .values(next_attempt_at=now + backoff(attempts), last_error=error[:MAX_ERROR_CHARS])
            .execution_options(synchronize_session=False)
        )

    def backlog(self) -> tuple[int, datetime | None, int]:
        """Live rows, the oldest live row's created_at, and abandoned rows: one
        read of the outbox (small: rows live until BudgetService acknowledges)."""
        live = PendingSettlement.abandoned_at.is_(None)
        row = self.session.execute(
            select(
                func.count().filter(live),
                func.min(PendingSettlement.created_at).filter(live),
                func.count().filter(PendingSettlement.abandoned_at.is_not(None)),
            )
        ).one()
        return int(row[0]), row[1], int(row[2])

    def abandon(self, row_id: int, error: str, now: datetime) -> None:
        self.session.execute(
            update(PendingSettlement)
            .where(PendingSettlement.id == row_id)
            .values(abandoned_at=now, last_error=error[:MAX_ERROR_CHARS])
            .execution_options(synchronize_session=False)
        )
