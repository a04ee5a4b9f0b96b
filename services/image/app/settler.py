"""Settling with BudgetService through the outbox: every commit and release
ImageService owes is written to store/settlements.py's table before its first
attempt and deleted when BudgetService acknowledges it.

The request path writes the row (in the transaction that stores the image and
its cache entry, when the flow has one) and makes the first attempt; when
BudgetService cannot be reached the row stays, and settle_pending (a
PeriodicJob built in main.py) retries it with a growing backoff.
CommitReservation and ReleaseReservation are idempotent, so an attempt whose
acknowledgement was lost, or two settlers on one row, charge and record
nothing twice. A row BudgetService refused for good is logged at ERROR
(reservation id, cost, request), marked abandoned and never retried.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.common.errors import DomainError, InvalidArgument
from services.image.app.ports import Budget
from services.image.app.record_sender import RecentKeys, RecordSender
from services.image.domain.accounting import Usage
from services.image.domain.settlement import (
    Attempt,
    Kind,
    RecordAnswer,
    Settled,
    Settlement,
    record_settled_by,
    settled_by,
)
from services.image.store.settlements import SettlementRepository, insert_claimed

log = logging.getLogger("recipeimage.image.settlement")

BATCH_SIZE = 50

SETTLEMENTS_PENDING = "recipeimage_image_settlements_pending"
SETTLEMENT_OLDEST_AGE = "recipeimage_image_settlement_oldest_age_seconds"
SETTLEMENTS_ABANDONED = "recipeimage_image_settlements_abandoned"
BACKLOG_GAUGES = {
    SETTLEMENTS_PENDING: "Commits and releases BudgetService has not acknowledged yet.",
    SETTLEMENT_OLDEST_AGE: "Age in seconds of the oldest unacknowledged settlement (0: none).",
    SETTLEMENTS_ABANDONED: "Settlements BudgetService refused for good, kept for reconciling.",
}


class Settler:
    """Writes the outbox rows, makes the attempts, and settles what is due."""

    def __init__(self, sessions: sessionmaker[Session], budget: Budget, clock: Clock) -> None:
        self.sessions = sessions
        self.budget = budget
        self.clock = clock
        self._engine: Engine = sessions.kw["bind"]
        self.records = RecordSender(self.deliver_records)
        self._recent = RecentKeys()

    def backlog(self) -> dict[str, float]:
        """The outbox for the monitoring gauges (read at each scrape)."""
        with self.sessions.begin() as session:
            pending, oldest, abandoned = SettlementRepository(session).backlog()
        age = (self.clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        return {
            SETTLEMENTS_PENDING: pending,
            SETTLEMENT_OLDEST_AGE: max(age, 0.0),
            SETTLEMENTS_ABANDONED: abandoned,
        }

    # -- the request path

    def queue(self, session: Session, settlement: Settlement) -> Settlement:
        """Write the outbox row in the caller's transaction; the settlement with its row."""
        return SettlementRepository(session).add(settlement, self.clock.now())

    def queue_alone(self, settlement: Settlement) -> Settlement:
        """Write the outbox row in a transaction of its own. When the database
        refuses, the settlement comes back without a row (the attempt is still
        made, as before there was an outbox)."""
        try:
            with self.sessions.begin() as session:
                return self.queue(session, settlement)
        except Exception:
            log.exception(
                "recording a pending settlement failed",
                extra={"reservation_id": settlement.reservation_id, "kind": settlement.kind.value},
            )
            return settlement

    def commit_now(self, settlement: Settlement) -> None:
        """Charge what an image cost. When BudgetService cannot be reached the row
        stays for the settler and the caller still gets the image it paid for. A
        final refusal (the row is abandoned and logged) fails the call, as does
        any failure when there is no row to fall back on."""
        attempt = self.attempt(settlement)
        if attempt.outcome is Settled.ACKNOWLEDGED:
            return
        if attempt.outcome is Settled.PENDING and settlement.row_id is not None:
            return
        error = attempt.error
        assert error is not None
        if settlement.row_id is None:
            # Money the provider took and the ledger does not show: say so loudly,
            # with what reconciling it needs.
            log.error(
                "committing a generation's cost failed",
                extra={
                    "reservation_id": settlement.reservation_id,
                    "request_id": settlement.usage.request_id,
                    "user_id": settlement.usage.user_id,
                    "cost_micros": settlement.actual_cost_micros,
                    "error": _message(error),
                },
            )
        raise error

    def release_now(self, settlement: Settlement) -> None:
        """Give the money back and record the attempt, through the outbox: when
        BudgetService cannot be reached the settler does it later. Never raises:
        the provider's error, not this one, is what the caller sees."""
        self.attempt(self.queue_alone(settlement))

    def record_hit(self, usage: Usage) -> bool | None:
        """A cache hit's record: written to the outbox and sent in a batch, so
        the hit waits for the database, never for BudgetService (None). When
        the outbox cannot be written, recorded at once as before there was one:
        True when BudgetService had the request_id's record already."""
        key = (usage.user_id, usage.request_id)
        if self._recent.seen(key):
            # This replica recorded the request_id already, perhaps not yet at
            # BudgetService (so Admit could not tell): a retry, recorded once.
            return True
        settlement = Settlement.record(usage)
        try:
            with self._engine.begin() as connection:
                settlement = insert_claimed(connection, settlement, self.clock.now())
        except Exception:
            log.exception("recording a hit's usage record in the outbox failed")
        if settlement.row_id is None:
            return self.budget.record_usage(usage)
        self._recent.add(key)
        self.records.submit(settlement)
        return None

    def deliver_records(self, settlements: list[Settlement]) -> int:
        """Send records in one RecordUsageBatch and settle their rows by the
        answers; how many BudgetService took (or left to a reservation)."""
        if not settlements:
            return 0
        try:
            answers = self.budget.record_usage_batch([s.usage for s in settlements])
        except Exception as error:
            answers = [RecordAnswer(recorded=False, error=error)] * len(settlements)
        done = [
            s
            for s, a in zip(settlements, answers, strict=True)
            if record_settled_by(a) is Settled.ACKNOWLEDGED
        ]
        self._acknowledge_rows([s.row_id for s in done if s.row_id is not None])
        for settlement, answer in zip(settlements, answers, strict=True):
            outcome = record_settled_by(answer)
            if outcome is not Settled.ACKNOWLEDGED and answer.error is not None:
                _log_failed_attempt(settlement, outcome, answer.error)
                self._update_row(settlement, outcome, _message(answer.error))
        return len(done)

    def _acknowledge_rows(self, row_ids: list[int]) -> None:
        try:
            with self.sessions.begin() as session:
                SettlementRepository(session).acknowledged_many(row_ids)
        except Exception:
            log.exception("deleting delivered records failed", extra={"rows": len(row_ids)})

    # -- one attempt

    def attempt(self, settlement: Settlement) -> Attempt:
        """Commit or release at BudgetService once, and settle the row by the answer."""
        try:
            if settlement.kind is Kind.COMMIT:
                self.budget.commit(
                    settlement.reservation_id, settlement.actual_cost_micros, settlement.usage
                )
            else:
                self.budget.release(settlement.reservation_id, settlement.usage)
        except Exception as error:
            outcome = settled_by(error)
            bare = replace(settlement, usage=settlement.usage.without_text())
            if _refused_for_its_text(settlement, outcome, error) and bare != settlement:
                # The provider was paid: record the spend without the text
                # BudgetService refused, rather than abandon it.
                log.error(
                    "BudgetService refused a commit's usage record; committing it without its text",
                    extra={"reservation_id": settlement.reservation_id, "error": _message(error)},
                )
                return self.attempt(bare)
            _log_failed_attempt(settlement, outcome, error)
            self._update_row(settlement, outcome, _message(error))
            return Attempt(outcome, error)
        self._update_row(settlement, Settled.ACKNOWLEDGED, "")
        return Attempt(Settled.ACKNOWLEDGED)

    def _update_row(self, settlement: Settlement, outcome: Settled, message: str) -> None:
        """Delete (acknowledged), abandon or reschedule the row. A failure here
        leaves the row as it was: due again after the claim period."""
        row_id = settlement.row_id
        if row_id is None:
            return
        now = self.clock.now()
        try:
            with self.sessions.begin() as session:
                repo = SettlementRepository(session)
                if outcome is Settled.ACKNOWLEDGED:
                    repo.acknowledged(row_id)
                elif outcome is Settled.ABANDONED:
                    repo.abandon(row_id, message, now)
                else:
                    repo.failed(row_id, settlement.attempts, message, now)
        except Exception:
            log.exception("updating a pending settlement failed", extra={"row_id": row_id})

    # -- the settler job

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
            records: list[Settlement] = []
            for row_id, seen in due:
                after_id = row_id
                with self.sessions.begin() as session:
                    claimed = SettlementRepository(session).claim(row_id, seen, now)
                if claimed is None:
                    continue  # another settler has it, or it is gone
                if claimed.kind is Kind.RECORD:
                    records.append(claimed)  # sent together below
                    continue
                outcome = self.attempt(claimed).outcome
                if outcome is Settled.ACKNOWLEDGED:
                    acknowledged += 1
                elif outcome is Settled.PENDING:
                    return acknowledged + self.deliver_records(records)
            acknowledged += self.deliver_records(records)
            if len(due) < BATCH_SIZE:
                return acknowledged


def _refused_for_its_text(settlement: Settlement, outcome: Settled, error: Exception) -> bool:
    return (
        outcome is Settled.ABANDONED
        and settlement.kind is Kind.COMMIT
        and isinstance(error, InvalidArgument)
    )


def _message(error: Exception) -> str:
    return error.message if isinstance(error, DomainError) else repr(error)


def _log_failed_attempt(settlement: Settlement, outcome: Settled, error: Exception) -> None:
    usage = settlement.usage
    if outcome is Settled.ABANDONED:
        log.error(
            "BudgetService refused a settlement for good; abandoned",
            extra={
                "reservation_id": settlement.reservation_id,
                "kind": settlement.kind.value,
                "cost_micros": settlement.actual_cost_micros,
                "request_id": usage.request_id,
                "user_id": usage.user_id,
                "error": _message(error),
            },
        )
    else:
        log.warning(
            "a settlement could not reach BudgetService; left for the settler",
            extra={
                "reservation_id": settlement.reservation_id,
                "kind": settlement.kind.value,
                "cost_micros": settlement.actual_cost_micros,
                "request_id": usage.request_id,
                "attempts": settlement.attempts,
                "error": _message(error),
            },
        )
