"""The periodic alert rules: burn rate (the system's windows, and those of
the users who spent in the last burn_rate_hours) and the unusual patterns.

Runs in a background thread of every replica (interval 0: never) and on
demand. Safe everywhere at once: each alert is keyed by rule, subject and
period, so however many replicas judge the same figures, one row is written.
One short transaction a run: read the figures, insert what they raise.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from services.budget.app.alerts import AlertRaiser
from services.budget.app.window_views import limits_views
from services.budget.domain.alert_rules import (
    WindowSpend,
    burn_rate_alert,
    cache_collapse_alert,
    exhaustion_at,
    spike_alerts,
    unusual_day_alerts,
)
from services.budget.domain.alerts import Alert
from services.budget.domain.limits import LimitPolicy, LimitValues
from services.budget.domain.windows import (
    SYSTEM_SUBJECT,
    Period,
    Scope,
    Span,
    WindowKey,
    period_of,
)
from services.budget.store.unit_of_work import BudgetStore, Transaction
from services.common.clock import Clock
from services.common.periodic import PeriodicJob

log = logging.getLogger("recipeimage.budget.alerts")

HOUR = timedelta(hours=1)
# Users whose windows are read at once (two queries a batch).
USERS_PER_BATCH = 200


class AlertEvaluator:
    def __init__(
        self,
        store: BudgetStore,
        raiser: AlertRaiser,
        policy: LimitPolicy,
        clock: Clock,
        interval_seconds: float,
    ) -> None:
        self._store = store
        self._raiser = raiser
        self._rules = raiser.rules
        self._policy = policy
        self._clock = clock
        self._job = PeriodicJob("budget-alerts", interval_seconds, self._run, log)

    def evaluate(self, now: datetime | None = None) -> list[Alert]:
        """Judge every periodic rule at now (default: the clock's); the alerts
        raised (none that another run, here or elsewhere, raised before)."""
        now = now or self._clock.now()
        with self._store.transaction() as tx:
            found = self._burn_rate(tx, now) + self._patterns(tx, now)
            return self._raiser.raise_alerts(tx, found)

    def _run(self) -> int:
        return len(self.evaluate())

    def _burn_rate(self, tx: Transaction, now: datetime) -> list[Alert]:
        """The system's windows and those of each user who spent in the last
        burn_rate_hours, at that pace."""
        _, stored = tx.limits.load_limit_settings(SYSTEM_SUBJECT)
        pace = timedelta(hours=self._rules.burn_rate_hours)
        periods = {span: period_of(span, now, self._policy.zone) for span in Span}
        keys = {
            span: WindowKey(Scope.SYSTEM, SYSTEM_SUBJECT, span, period.start_date)
            for span, period in periods.items()
        }
        counters = tx.windows.load_counters(keys.values())
        paced = tx.alert_figures.spend_since(now - pace)
        alerts = []
        for span, key in keys.items():
            limit = self._policy.system_limit(span, stored).micros
            window = WindowSpend(key, limit, counters[key].spent_micros)
            alerts += self._burn_rate_alert(window, periods[span], paced, now)
        return alerts + self._users_burn_rate(tx, stored, now)

    def _users_burn_rate(self, tx: Transaction, system: LimitValues, now: datetime) -> list[Alert]:
        """Users who spent in the last burn_rate_hours only (the ledger's
        created_at index), their windows against their effective limits now
        (tier, override, cap and the credits active now), a batch of users
        at a time."""
        pace = timedelta(hours=self._rules.burn_rate_hours)
        spenders = tx.alert_figures.spenders_since(now - pace)
        ids = sorted(spenders)
        alerts = []
        for first in range(0, len(ids), USERS_PER_BATCH):
            users = tx.limits.load_users_settings(ids[first : first + USERS_PER_BATCH])
            for view in limits_views(tx, self._policy, users, system, now):
                for state in view.windows:
                    if state.key.scope is Scope.USER:
                        window = WindowSpend(
                            state.key, state.effective_limit_micros, state.spent_micros
                        )
                        alerts += self._burn_rate_alert(
                            window, state.period, spenders[view.user_id], now
                        )
        return alerts

    def _burn_rate_alert(
        self, window: WindowSpend, period: Period, paced: int, now: datetime
    ) -> list[Alert]:
        hours = self._rules.burn_rate_hours
        at = exhaustion_at(window, period, paced, timedelta(hours=hours), now)
        if at is None or at <= now:  # reached already: the threshold alert says so
            return []
        return [burn_rate_alert(window, at, hours, self._policy.zone, now)]

    def _patterns(self, tx: Transaction, now: datetime) -> list[Alert]:
        """Judged on UTC days, the daily rollup's."""
        rules = self._rules
        day = now.astimezone(UTC).date()
        first = day - timedelta(days=rules.baseline_days)
        alerts = []
        busy = tx.alert_figures.busy_users(
            day, rules.unusual_spend_floor_micros, rules.unusual_generations_floor
        )
        for today in busy:
            history = tx.alert_figures.user_days(today.user_id, first, day)
            alerts += unusual_day_alerts(rules, day, today, history, now)
        recent = tx.alert_figures.attempts_since(now - HOUR)
        alerts += spike_alerts(rules, recent, day, now)
        collapse = cache_collapse_alert(
            rules, recent, tx.alert_figures.cache_hits_between(first, day), day, now
        )
        return alerts + ([collapse] if collapse else [])

    def start(self) -> None:
        self._job.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._job.stop(timeout)
