"""A settlement: one commit or release ImageService owes BudgetService, as one
value, and the rules of retrying it. Plain Python.

BudgetService's NOT_FOUND, FAILED_PRECONDITION and INVALID_ARGUMENT are final:
retrying cannot change them. Anything else (it cannot be reached, a transient
error) leaves the settlement owed, to be tried again after a growing backoff.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import timedelta

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.image.domain.accounting import Usage

# Answers of BudgetService that no retry can change.
FINAL_ERRORS = (NotFound, FailedPrecondition, InvalidArgument)
# How long a claimed row (by the request path or a settler) is left to its
# claimant before another settler may take it over: longer than the BudgetService
# client's retries of one call take.
CLAIM_PERIOD = timedelta(seconds=60)
FIRST_BACKOFF = timedelta(seconds=5)
LONGEST_BACKOFF = timedelta(minutes=15)


class Kind(enum.StrEnum):
    COMMIT = "commit"
    RELEASE = "release"
    # The usage record of an attempt that held no reservation (a cache hit),
    # sent in batches (RecordUsageBatch).
    RECORD = "record"


@dataclass(frozen=True)
class Settlement:
    """A commit (of actual_cost_micros) or a release of a reservation, with the
    attempt's usage record. `row_id` is its outbox row (None when it could not
    be written) and `attempts` the row's version: how many attempts were claimed."""

    kind: Kind
    reservation_id: str
    actual_cost_micros: int
    usage: Usage
    row_id: int | None = None
    attempts: int = 1

    @classmethod
    def commit(cls, reservation_id: str, actual_cost_micros: int, usage: Usage) -> Settlement:
        return cls(Kind.COMMIT, reservation_id, actual_cost_micros, usage)

    @classmethod
    def release(cls, reservation_id: str, usage: Usage) -> Settlement:
        return cls(Kind.RELEASE, reservation_id, 0, usage)

    @classmethod
    def record(cls, usage: Usage) -> Settlement:
        return cls(Kind.RECORD, "", 0, usage)

    def queued_as(self, row_id: int) -> Settlement:
        return replace(self, row_id=row_id)


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


@dataclass(frozen=True)
class RecordAnswer:
    """BudgetService's answer for one record of a batch: recorded (duplicate
    when it was there already), or the error RecordUsage would have raised."""

    recorded: bool
    duplicate: bool = False
    error: Exception | None = None


# A record refused because its request_id holds a reservation: that
# reservation's commit or release writes the attempt's one record.
ATTEMPT_HAS_RESERVATION = "ATTEMPT_HAS_RESERVATION"


def record_settled_by(answer: RecordAnswer) -> Settled:
    """How a record's row ends: acknowledged when recorded, or when the
    attempt's record is the reservation's to write; else as settled_by."""
    if answer.recorded:
        return Settled.ACKNOWLEDGED
    error = answer.error
    if isinstance(error, FailedPrecondition) and error.info.reason == ATTEMPT_HAS_RESERVATION:
        return Settled.ACKNOWLEDGED
    return settled_by(error) if error is not None else Settled.PENDING


def settled_by(error: Exception) -> Settled:
    """ABANDONED for an answer no retry can change, else PENDING."""
    return Settled.ABANDONED if isinstance(error, FINAL_ERRORS) else Settled.PENDING


def backoff(attempts: int) -> timedelta:
    """The wait after the attempts-th failed attempt: 5 s, 10 s, 20 s, ... 15 min."""
    if attempts <= 1:
        return FIRST_BACKOFF
    return min(FIRST_BACKOFF * (1 << min(attempts - 1, 20)), LONGEST_BACKOFF)
