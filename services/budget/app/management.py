"""Budget management: tiers, an admin's overrides, a user's own caps, the
system limits, and the audit log that keeps every change.

Each change is one transaction: lock the stored settings, change them, append
the audit entry (who, what, before, after, when). A call that changes nothing
leaves no entry, so retrying one is harmless. Roles are checked at the edge
(admin only, except SetSpendCap, which a user calls for itself).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

from services.budget.app.alerts import AlertRaiser
from services.budget.app.paging import Pager
from services.budget.domain.audit import Actor, AuditAction, AuditEntry, AuditPage, AuditSnapshot
from services.budget.domain.limits import (
    LimitPolicy,
    LimitValues,
    RateLimitValues,
    SystemLimitsView,
    Tier,
    UserSettings,
    WindowLimit,
)
from services.budget.domain.validation import Violations
from services.budget.domain.windows import Scope, Span
from services.budget.store.unit_of_work import BudgetStore, Transaction
from services.common.clock import Clock


def _user_snapshot(settings: UserSettings) -> AuditSnapshot:
    return AuditSnapshot(tier=settings.tier, overrides=settings.overrides, cap=settings.cap)


def _rate_snapshot(settings: UserSettings) -> AuditSnapshot:
    return AuditSnapshot(rate_overrides=settings.rate_overrides)


def _before_id(position: Mapping[str, object]) -> int:
    return int(str(position["i"]))


class Management:
    """`violations` arguments carry what the edge already found wrong with the
    same request; `actor` is who makes the change, for the audit log."""

    def __init__(
        self,
        store: BudgetStore,
        clock: Clock,
        policy: LimitPolicy,
        pager: Pager,
        alerts: AlertRaiser,
    ) -> None:
        self._alerts = alerts
        self._store = store
        self._clock = clock
        self._policy = policy
        self._pager = pager

    # Users

    def set_user_tier(
        self, actor: Actor, user_id: str, tier: Tier | None, violations: Violations
    ) -> UserSettings:
        if tier is None:
            violations.add("tier", "required: FREE, PREMIUM or PRO")
        violations.raise_if_any()
        return self._store_user_change(
            actor, user_id, AuditAction.SET_USER_TIER, lambda s: replace(s, tier=tier)
        )

    def set_user_limits(
        self, actor: Actor, user_id: str, overrides: LimitValues, violations: Violations
    ) -> UserSettings:
        """Replace the user's overrides: an unset value clears that override."""
        violations.limits("overrides", overrides)
        violations.raise_if_any()
        return self._store_user_change(
            actor, user_id, AuditAction.SET_USER_LIMITS, lambda s: replace(s, overrides=overrides)
        )

    def set_spend_cap(
        self, actor: Actor, user_id: str, cap: LimitValues, violations: Violations
    ) -> UserSettings:
        """Replace the caps a user sets on itself: an unset value clears that cap.

        A cap is stored as given and only ever lowers a limit (LimitPolicy takes
        the smaller of cap and limit), so a cap above the tier's or override's
        limit changes nothing until that limit rises above it. Choosing that
        over refusing it keeps a cap meaningful across a tier change.
        """
        violations.limits("spend_cap", cap)
        violations.raise_if_any()
        return self._store_user_change(
            actor, user_id, AuditAction.SET_SPEND_CAP, lambda s: replace(s, cap=cap)
        )

    def set_user_rate_limits(
        self, actor: Actor, user_id: str, overrides: RateLimitValues, violations: Violations
    ) -> UserSettings:
        """Replace the user's rate overrides: an unset value clears that override."""
        for name, value in overrides.as_dict().items():
            violations.positive(f"overrides.{name}", value)
        violations.raise_if_any()
        return self._store_user_change(
            actor,
            user_id,
            AuditAction.SET_USER_RATE_LIMITS,
            lambda s: replace(s, rate_overrides=overrides),
            _rate_snapshot,
        )

    def _store_user_change(
        self,
        actor: Actor,
        user_id: str,
        action: AuditAction,
        change: Callable[[UserSettings], UserSettings],
        snapshot: Callable[[UserSettings], AuditSnapshot] = _user_snapshot,
    ) -> UserSettings:
        """Lock the user's settings, store the change and its audit entry (a
        change that changes nothing stores neither)."""
        now = self._clock.now()
        with self._store.transaction() as tx:
            before = tx.limits.lock_user(user_id, now)
            after = change(before)
            if after != before:
                tx.limits.store_user_settings(after, now)
                tx.audit.store_entry(
                    AuditEntry.new(actor, action, user_id, snapshot(before), snapshot(after), now)
                )
                self._raise_user_limit_alerts(tx, before, after, now)
        return after

    def _raise_user_limit_alerts(
        self, tx: Transaction, before: UserSettings, after: UserSettings, now: datetime
    ) -> None:
        """A lowered limit may put the user's spend over a threshold."""
        old, new = self._policy.effective(before), self._policy.effective(after)
        if old.user == new.user:
            return  # rates only, or a cap above the limit: no window changed
        user_windows = [self._policy.windows(limits, now) for limits in (old, new)]
        self._alerts.raise_after_limit_change(
            tx, *([w for w in windows if w.key.scope is Scope.USER] for windows in user_windows)
        )

    # The system

    def set_system_limits(
        self, actor: Actor, daily_micros: int | None, monthly_micros: int | None
    ) -> SystemLimitsView:
        """Replace the admin-set system limits: an unset value goes back to the
        configured limit."""
        violations = Violations()
        violations.not_negative("daily_limit_micros", daily_micros)
        violations.not_negative("monthly_limit_micros", monthly_micros)
        violations.raise_if_any()
        now = self._clock.now()
        after = LimitValues(daily_micros=daily_micros, monthly_micros=monthly_micros)
        with self._store.transaction() as tx:
            before = tx.limits.lock_system_limits()
            if after != before:
                tx.limits.store_system_limits(after, now)
                tx.audit.store_entry(
                    AuditEntry.new(
                        actor,
                        AuditAction.SET_SYSTEM_LIMITS,
                        "",
                        AuditSnapshot(system=before),
                        AuditSnapshot(system=after),
                        now,
                    )
                )
                self._alerts.raise_after_limit_change(
                    tx, self._system_windows(before, now), self._system_windows(after, now)
                )
        return SystemLimitsView(
            daily=self._policy.system_limit(Span.DAY, after),
            monthly=self._policy.system_limit(Span.MONTH, after),
        )

    def _system_windows(self, values: LimitValues, now: datetime) -> list[WindowLimit]:
        limits = self._policy.effective(UserSettings(user_id=""), values)
        return [w for w in self._policy.windows(limits, now) if w.key.scope is Scope.SYSTEM]

    # The audit log

    def audit_log(self, *, page_size: int, page_token: str, target_user_id: str) -> AuditPage:
        violations = Violations()
        target = target_user_id.strip()
        page = self._pager.open(violations, page_size, page_token, {"target_user_id": target})
        before_id = page.after(violations, _before_id)
        violations.raise_if_any()
        with self._store.transaction() as tx:
            entries = tx.audit.load_page(
                target_user_id=target, before_id=before_id, limit=page.fetch_limit
            )
        kept, token = self._pager.close(page, entries, lambda entry: {"i": entry.id})
        return AuditPage(kept, token)
