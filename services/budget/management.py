"""Budget management: tiers, an admin's overrides, a user's own caps, the
system limits, and the audit log that keeps every change.

Each change is one transaction: lock the stored settings, change them, append
the audit entry (who, what, before, after, when). A call that changes nothing
leaves no entry, so retrying one is harmless. Roles are checked at the edge
(admin only, except SetSpendCap, which a user calls for itself).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy.orm import sessionmaker

from services.budget.audit_repository import AuditRepository
from services.budget.domain import AuditAction, AuditEntry, AuditSnapshot
from services.budget.limits import Limit, LimitPolicy, LimitValues, Tier, UserSettings
from services.budget.repository import Repository
from services.budget.validation import Violations
from services.budget.windows import Span
from services.common import paging
from services.common.auth import Principal
from services.common.clock import Clock


@dataclass(frozen=True)
class SystemLimitsView:
    daily: Limit
    monthly: Limit


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_page_token: str


def _user_snapshot(settings: UserSettings) -> AuditSnapshot:
    return AuditSnapshot(tier=settings.tier, overrides=settings.overrides, cap=settings.cap)


def _check_limits(violations: Violations, field: str, values: LimitValues) -> None:
    for name, value in (
        ("daily_micros", values.daily_micros),
        ("monthly_micros", values.monthly_micros),
        ("per_generation_micros", values.per_generation_micros),
    ):
        if value is not None and value < 0:
            violations.add(f"{field}.{name}", "must not be negative")


class Management:
    def __init__(self, sessions: sessionmaker, clock: Clock, policy: LimitPolicy) -> None:
        self._sessions = sessions
        self._clock = clock
        self._policy = policy

    # Users

    def set_user_tier(self, principal: Principal, user_id: str, tier: Tier | None) -> UserSettings:
        violations = Violations()
        user_id = violations.acting_for(principal, user_id)
        if tier is None:
            violations.add("tier", "required: FREE, PREMIUM or PRO")
        violations.raise_if_any()
        return self._change_user(
            principal,
            user_id,
            AuditAction.SET_USER_TIER,
            lambda settings: replace(settings, tier=tier),
        )

    def set_user_limits(
        self, principal: Principal, user_id: str, overrides: LimitValues
    ) -> UserSettings:
        """Replace the user's overrides: an unset value clears that override."""
        violations = Violations()
        user_id = violations.acting_for(principal, user_id)
        _check_limits(violations, "overrides", overrides)
        violations.raise_if_any()
        return self._change_user(
            principal,
            user_id,
            AuditAction.SET_USER_LIMITS,
            lambda settings: replace(settings, overrides=overrides),
        )

    def set_spend_cap(self, principal: Principal, user_id: str, cap: LimitValues) -> UserSettings:
        """Replace the caps a user sets on itself: an unset value clears that cap.

        A cap is stored as given and only ever lowers a limit (LimitPolicy takes
        the smaller of cap and limit), so a cap above the tier's or override's
        limit changes nothing until that limit rises above it. Choosing that
        over refusing it keeps a cap meaningful across a tier change.
        """
        violations = Violations()
        user_id = violations.acting_for(principal, user_id)
        _check_limits(violations, "spend_cap", cap)
        violations.raise_if_any()
        return self._change_user(
            principal,
            user_id,
            AuditAction.SET_SPEND_CAP,
            lambda settings: replace(settings, cap=cap),
        )

    def _change_user(self, principal, user_id, action, change) -> UserSettings:  # type: ignore[no-untyped-def]
        now = self._clock.now()
        with self._sessions.begin() as session:
            repository = Repository(session)
            before = repository.lock_user(user_id, now)
            after = change(before)
            if after != before:
                repository.save_user(after, now)
                AuditRepository(session).add(
                    AuditEntry(
                        id=0,
                        created_at=now,
                        actor=principal.subject,
                        actor_role=principal.role.value,
                        action=action,
                        target_user_id=user_id,
                        before=_user_snapshot(before),
                        after=_user_snapshot(after),
                    )
                )
        return after

    # The system

    def set_system_limits(
        self, principal: Principal, daily_micros: int | None, monthly_micros: int | None
    ) -> SystemLimitsView:
        """Replace the admin-set system limits: an unset value goes back to the
        configured limit."""
        violations = Violations()
        for field, value in (
            ("daily_limit_micros", daily_micros),
            ("monthly_limit_micros", monthly_micros),
        ):
            if value is not None and value < 0:
                violations.add(field, "must not be negative")
        violations.raise_if_any()
        now = self._clock.now()
        after = LimitValues(daily_micros=daily_micros, monthly_micros=monthly_micros)
        with self._sessions.begin() as session:
            repository = Repository(session)
            before = repository.lock_system_limits()
            if after != before:
                repository.save_system_limits(after, now)
                AuditRepository(session).add(
                    AuditEntry(
                        id=0,
                        created_at=now,
                        actor=principal.subject,
                        actor_role=principal.role.value,
                        action=AuditAction.SET_SYSTEM_LIMITS,
                        target_user_id="",
                        before=AuditSnapshot(system=before),
                        after=AuditSnapshot(system=after),
                    )
                )
        return SystemLimitsView(
            daily=self._policy.system_limit(Span.DAY, after),
            monthly=self._policy.system_limit(Span.MONTH, after),
        )

    # The audit log

    def audit_log(
        self, principal: Principal, *, page_size: int, page_token: str, target_user_id: str
    ) -> AuditPage:
        violations = Violations()
        size = paging.page_size(violations, page_size)
        target = target_user_id.strip()
        query = {"target_user_id": target}
        position = paging.decode(violations, page_token, query)
        before_id = None
        if position is not None:
            try:
                before_id = int(position["i"])  # type: ignore[call-overload]
            except (KeyError, TypeError, ValueError):
                violations.add("page_token", "not a page token this service issued")
        violations.raise_if_any()
        with self._sessions.begin() as session:
            entries = AuditRepository(session).page(
                target_user_id=target, before_id=before_id, limit=size + 1
            )
        token = ""
        if len(entries) > size:
            entries = entries[:size]
            token = paging.encode({"i": entries[-1].id}, query)
        return AuditPage(entries, token)
