"""The usage ledger: one append-only record per attempt, unique by request_id."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import sessionmaker

from services.budget.domain import Outcome, Usage
from services.budget.repository import Repository
from services.budget.usage_repository import UsageRepository
from services.budget.validation import MAX_ERROR_MESSAGE_CHARS, Violations
from services.common.auth import Principal
from services.common.clock import Clock
from services.common.errors import FailedPrecondition, PermissionDenied

ATTEMPT_HAS_RESERVATION = "ATTEMPT_HAS_RESERVATION"


@dataclass(frozen=True)
class Recorded:
    usage: Usage
    # True when a record with this request_id existed; nothing was written.
    duplicate: bool


def completed(
    usage: Usage, *, default_outcome: Outcome, created_at: datetime, **fields: object
) -> Usage:
    """A usage record as the ledger stores it: fields filled in and made consistent.

    Without an outcome the record gets default_outcome and the success that goes
    with it; with one, success is the caller's, but never for an attempt that
    served no image.
    """
    outcome = usage.outcome or default_outcome
    success = outcome.served_image and (usage.success if usage.outcome else True)
    record = replace(usage, outcome=outcome, created_at=created_at, **fields)
    return replace(
        record,
        success=success,
        prompt_length=record.prompt_length or len(record.prompt),
        cached=record.cached or outcome.cache_hit != "",
        cache_hit=record.cache_hit or outcome.cache_hit,
        fallback_used=record.fallback_used or outcome is Outcome.FALLBACK,
        # The provider's text can be long; the attempt is recorded regardless.
        error_message=record.error_message[:MAX_ERROR_MESSAGE_CHARS],
    )


class Ledger:
    def __init__(self, sessions: sessionmaker, clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def record(self, principal: Principal, usage: Usage) -> Recorded:
        """RecordUsage: an attempt that held no reservation (a cache hit, a refusal)."""
        violations = Violations()
        user_id = violations.acting_for(principal, usage.user_id, "usage.user_id")
        violations.identifier("usage.request_id", usage.request_id)
        if usage.outcome is None:
            violations.add("usage.outcome", "required")
        if usage.reservation_id:
            violations.add(
                "usage.reservation_id",
                "must be empty: commit or release the reservation to record its attempt",
            )
        # Spend enters the ledger only with a commit, which charges the windows too.
        if usage.outcome is Outcome.GENERATED:
            violations.add("usage.outcome", "a generated image is paid for: reserve, then commit")
        if usage.cost_micros > 0:
            violations.add("usage.cost_micros", "must be 0: spend is recorded by CommitReservation")
        violations.usage(usage)
        violations.raise_if_any()
        record = completed(
            usage, default_outcome=Outcome.FAILED, created_at=self._clock.now(), user_id=user_id
        )
        with self._sessions.begin() as session:
            usage_repository = UsageRepository(session)
            if usage_repository.insert(record):
                if Repository(session).reservation_by_key(record.request_id) is not None:
                    # Raising rolls the insert back: the attempt held money, and
                    # its record is written when that reservation is settled.
                    raise FailedPrecondition(
                        "this request_id has a reservation: commit or release it to record "
                        "the attempt",
                        ATTEMPT_HAS_RESERVATION,
                        {"request_id": record.request_id},
                    )
                return Recorded(record, duplicate=False)
            existing = usage_repository.by_request_id(record.request_id)
        if existing is None:  # pragma: no cover - the conflicting row cannot vanish
            raise RuntimeError(f"usage record {record.request_id!r} conflicted but is missing")
        if existing.user_id != user_id:
            raise PermissionDenied("this request_id belongs to another user's usage record")
        return Recorded(existing, duplicate=True)
