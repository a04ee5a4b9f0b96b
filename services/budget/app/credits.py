"""GrantCredit: add a one-off amount to the current instance of a user's or
the system's day or month window, audited.

One transaction: the credit's row, its window row's credit_micros (created
when the window has no row yet), the audit entry. The window row's lock
orders the grant with every hold on that window, and the hold statement
counts the credit from the commit on (store.windows).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from services.budget.domain.audit import Actor, AuditAction, AuditEntry, AuditSnapshot
from services.budget.domain.credits import MAX_REASON_CHARS, Credit
from services.budget.domain.validation import Violations
from services.budget.domain.windows import (
    SYSTEM_SUBJECT,
    Period,
    Scope,
    Span,
    WindowKey,
    period_of,
)
from services.budget.store.unit_of_work import BudgetStore
from services.common.clock import Clock


class Credits:
    def __init__(self, store: BudgetStore, clock: Clock, zone: ZoneInfo) -> None:
        self._store = store
        self._clock = clock
        self._zone = zone

    def grant(
        self,
        actor: Actor,
        window: tuple[Scope, Span] | None,
        user_id: str,
        amount_micros: int,
        reason: str,
        expires_at: datetime | None,
        violations: Violations,
    ) -> Credit:
        """`user_id` is the user of a user window ("" for a system window);
        `expires_at` None: the window's reset."""
        now = self._clock.now()
        violations.positive("amount_micros", amount_micros)
        if not reason.strip():
            violations.add("reason", "required")
        elif len(reason) > MAX_REASON_CHARS:
            violations.add("reason", f"at most {MAX_REASON_CHARS} characters")
        period = period_of(window[1], now, self._zone) if window else None
        if period is None:
            violations.add("window", "required: a user's or the system's daily or monthly window")
        else:
            _check_expiry(violations, expires_at or period.end, now, period)
        violations.raise_if_any()
        assert window is not None and period is not None  # else a violation was raised
        scope, span = window
        subject = user_id if scope is Scope.USER else SYSTEM_SUBJECT
        credit = Credit(
            id=0,
            key=WindowKey(scope, subject, span, period.start_date),
            period=period,
            amount_micros=amount_micros,
            reason=reason.strip(),
            created_at=now,
            expires_at=expires_at or period.end,
            created_by=actor.subject,
        )
        with self._store.transaction() as tx:
            stored = tx.credits.store_credit(credit)
            tx.audit.store_entry(
                AuditEntry.new(
                    actor,
                    AuditAction.GRANT_CREDIT,
                    user_id if scope is Scope.USER else "",
                    AuditSnapshot(),
                    AuditSnapshot(credit=stored),
                    now,
                )
            )
        return stored


def _check_expiry(violations: Violations, expires: datetime, now: datetime, period: Period) -> None:
    """A credit expires after now and at the latest when its window resets."""
    if expires <= now:
        violations.add("expire_time", "must be after now")
    elif expires > period.end:
        violations.add("expire_time", f"at most the window's reset ({period.end.isoformat()})")
