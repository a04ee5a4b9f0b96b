"""The settlement outbox: every commit and release ImageService owes BudgetService,
kept in ImageService's own database until BudgetService acknowledges it.

A row is written before the first attempt (in the transaction that stores the
image and its cache entry, when the flow has one) and deleted on the
acknowledgement. When BudgetService cannot be reached the row stays, and the
settler (a PeriodicJob built in services/image/main.py, or settle_pending called directly) retries
it with a growing backoff. CommitReservation and ReleaseReservation are
idempotent, so an attempt whose acknowledgement was lost, or two settlers on one
row, charge and record nothing twice.

Several replicas may settle at once: a settler claims a row with one
conditional UPDATE that bumps `attempts` (the row's version) and moves
next_attempt_at past the claim period, and works only on rows it claimed.

BudgetService's NOT_FOUND, FAILED_PRECONDITION and INVALID_ARGUMENT are final:
retrying cannot change them. Such a row is logged at ERROR (reservation id,
cost, request) and marked abandoned (abandoned_at), never retried, and kept
with its usage record for reconciling by hand.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock, SystemClock
from services.common.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound
from services.image.accounting import Budget, Outcome, Usage
from services.image.models import PendingSettlement

log = logging.getLogger("recipeimage.image.settlement")

# Answers of BudgetService that no retry can change.
FINAL_ERRORS = (NotFound, FailedPrecondition, InvalidArgument)
# How long a claimed row (by the request path or a settler) is left to its
# claimant before another settler may take it over: longer than the BudgetService
# client's retries of one call take.
CLAIM_PERIOD = timedelta(seconds=60)
FIRST_BACKOFF = timedelta(seconds=5)
LONGEST_BACKOFF = timedelta(minutes=15)
BATCH_SIZE = 50
MAX_ERROR_CHARS = 500


class Kind(enum.StrEnum):
    COMMIT = "commit"
    RELEASE = "release"


class Settled(enum.Enum):
    """How one attempt ended."""

    ACKNOWLEDGED = "acknowledged"
    # Not reached (or a transient error): the row waits for the settler.
    PENDING = "pending"
    # Refused for good; the row is abandoned.
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class Attempt:
    outcome: Settled
    error: Exception | None = None


def usage_to_json(usage: Usage) -> dict[str, Any]:
    return {
        name: (str(value) if name == "outcome" else value)
        for name, value in dataclasses.asdict(usage).items()
    }


def usage_from_json(data: dict[str, Any]) -> Usage:
    known = {field.name for field in dataclasses.fields(Usage)}
    values = {name: value for name, value in data.items() if name in known}
    values["outcome"] = Outcome(values.get("outcome", Outcome.FAILED))
    return Usage(**values)


def backoff(attempts: int) -> timedelta:
    """The wait after the attempts-th failed attempt: 5 s, 10 s, 20 s, ... 15 min."""
    if attempts <= 1:
        return FIRST_BACKOFF
    return min(FIRST_BACKOFF * (2 ** min(attempts - 1, 20)), LONGEST_BACKOFF)


class SettlementRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        kind: Kind,
        reservation_id: str,
        actual_cost_micros: int,
        usage: Usage,
        now: datetime,
    ) -> int:
        """A row claimed by its writer (attempts 1, next attempt after the claim
        period): the request path tries it at once, the settler only if that
        attempt never reports back."""
        row = PendingSettlement(
            reservation_id=reservation_id,
            kind=kind.value,
            actual_cost_micros=actual_cost_micros,
            usage=usage_to_json(usage),
            attempts=1,
            next_attempt_at=now + CLAIM_PERIOD,
            last_error="",
            created_at=now,
        )
        self.session.add(row)
        self.session.flush()
        return row.id

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

    def claim(self, row_id: int, seen_attempts: int, now: datetime) -> PendingSettlement | None:
        """Take the row when it is still due and nobody took it since it was read:
        one statement, so of two settlers exactly one wins."""
        claimed = self.session.execute(
            update(PendingSettlement)
            .where(
                PendingSettlement.id == row_id,
                PendingSettlement.attempts == seen_attempts,
                PendingSettlement.abandoned_at.is_(None),
                PendingSettlement.next_attempt_at <= now,
            )
            .values(attempts=seen_attempts + 1, next_attempt_at=now + CLAIM_PERIOD)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return self.session.get(PendingSettlement, row_id, populate_existing=True)

    def acknowledged(self, row_id: int) -> None:
        self.session.execute(delete(PendingSettlement).where(PendingSettlement.id == row_id))

    def failed(self, row_id: int, attempts: int, error: str, now: datetime) -> None:
        """Schedule the next attempt, unless another settler took the row over."""
        self.session.execute(
            update(PendingSettlement)
            .where(PendingSettlement.id == row_id, PendingSettlement.attempts == attempts)
            .values(next_attempt_at=now + backoff(attempts), last_error=error[:MAX_ERROR_CHARS])
            .execution_options(synchronize_session=False)
        )

    def abandon(self, row_id: int, error: str, now: datetime) -> None:
        self.session.execute(
            update(PendingSettlement)
            .where(PendingSettlement.id == row_id)
            .values(abandoned_at=now, last_error=error[:MAX_ERROR_CHARS])
            .execution_options(synchronize_session=False)
        )

    def pending(self) -> list[PendingSettlement]:
        return list(self.session.scalars(select(PendingSettlement).order_by(PendingSettlement.id)))


class Settlements:
    """Writes the outbox rows, makes the attempts, and settles what is due."""

    def __init__(
        self, sessions: sessionmaker[Session], budget: Budget, clock: Clock | None = None
    ) -> None:
        self.sessions = sessions
        self.budget = budget
        self.clock = clock or SystemClock()

    def record(
        self,
        session: Session,
        kind: Kind,
        reservation_id: str,
        actual_cost_micros: int,
        usage: Usage,
    ) -> int:
        """Add the row in the caller's transaction; its id."""
        return SettlementRepository(session).add(
            kind, reservation_id, actual_cost_micros, usage, self.clock.now()
        )

    def record_alone(
        self, kind: Kind, reservation_id: str, actual_cost_micros: int, usage: Usage
    ) -> int | None:
        """Add the row in a transaction of its own; None when the database refused
        (the attempt is still made, as before there was an outbox)."""
        try:
            with self.sessions.begin() as session:
                return self.record(session, kind, reservation_id, actual_cost_micros, usage)
        except Exception:
            log.exception(
                "recording a pending settlement failed",
                extra={"reservation_id": reservation_id, "kind": kind.value},
            )
            return None

    def attempt(
        self,
        row_id: int | None,
        attempts: int,
        kind: Kind,
        reservation_id: str,
        actual_cost_micros: int,
        usage: Usage,
    ) -> Attempt:
        """Commit or release at BudgetService once, and settle the row by the answer."""
        try:
            if kind is Kind.COMMIT:
                self.budget.commit(reservation_id, actual_cost_micros, usage)
            else:
                self.budget.release(reservation_id, usage)
        except Exception as error:
            final = isinstance(error, FINAL_ERRORS)
            message = error.message if isinstance(error, DomainError) else repr(error)
            if final:
                log.error(
                    "BudgetService refused a settlement for good; abandoned",
                    extra={
                        "reservation_id": reservation_id,
                        "kind": kind.value,
                        "cost_micros": actual_cost_micros,
                        "request_id": usage.request_id,
                        "user_id": usage.user_id,
                        "error": message,
                    },
                )
            else:
                log.warning(
                    "a settlement could not reach BudgetService; left for the settler",
                    extra={
                        "reservation_id": reservation_id,
                        "kind": kind.value,
                        "cost_micros": actual_cost_micros,
                        "request_id": usage.request_id,
                        "attempts": attempts,
                        "error": message,
                    },
                )
            if row_id is not None:
                self._after(row_id, attempts, final, message)
            return Attempt(Settled.ABANDONED if final else Settled.PENDING, error)
        if row_id is not None:
            self._after(row_id, attempts, None, "")
        return Attempt(Settled.ACKNOWLEDGED)

    def _after(self, row_id: int, attempts: int, final: bool | None, message: str) -> None:
        """Delete (acknowledged), abandon (final) or reschedule the row. A failure
        here leaves the row as it was: due again after the claim period."""
        now = self.clock.now()
        try:
            with self.sessions.begin() as session:
                repo = SettlementRepository(session)
                if final is None:
                    repo.acknowledged(row_id)
                elif final:
                    repo.abandon(row_id, message, now)
                else:
                    repo.failed(row_id, attempts, message, now)
        except Exception:
            log.exception("updating a pending settlement failed", extra={"row_id": row_id})

    def settle_pending(self, now: datetime | None = None) -> int:
        """Attempt every row due at now (default: the clock's now) once; the number
        BudgetService acknowledged. A pass stops at the first row BudgetService
        could not take: the rest wait for the next pass rather than hammer it."""
        now = now or self.clock.now()
        acknowledged = 0
        after_id = 0
        while True:
            with self.sessions.begin() as session:
                due = SettlementRepository(session).due(now, after_id, BATCH_SIZE)
            for row_id, seen in due:
                after_id = row_id
                with self.sessions.begin() as session:
                    row = SettlementRepository(session).claim(row_id, seen, now)
                    if row is None:
                        continue  # another settler has it, or it is gone
                    kind, reservation_id = Kind(row.kind), row.reservation_id
                    cost, usage = row.actual_cost_micros, usage_from_json(row.usage)
                result = self.attempt(row_id, seen + 1, kind, reservation_id, cost, usage)
                if result.outcome is Settled.ACKNOWLEDGED:
                    acknowledged += 1
                elif result.outcome is Settled.PENDING:
                    return acknowledged
            if len(due) < BATCH_SIZE:
                return acknowledged
