"""Raising alerts inside the transaction that causes them.

AlertRaiser is handed to every use case that moves a window's spend or limit
(CommitReservation, the limit changes): it computes the thresholds crossed
in plain Python, so a transaction that crosses none costs no round trip, and
inserts each crossed alert once (store.alerts).

Thresholds are judged against the effective limit: the window's limit plus
its credits that count at that instant. GrantCredit only raises a limit, so
it crosses nothing and raises nothing; the commit reads the credits in its
window statement (store.windows.settle), so a credit counts from its grant
and stops counting at its expiry, with nothing to keep up to date. Who learns of a raise
(the Prometheus counter, this process's WatchAlerts streams) learns it only
after the transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from services.budget.domain.alert_rules import AlertRules, WindowSpend, threshold_alerts
from services.budget.domain.alerts import Alert
from services.budget.domain.limits import WindowLimit
from services.budget.domain.reservations import Counters
from services.budget.domain.windows import WindowKey
from services.budget.store.unit_of_work import Transaction
from services.common.clock import Clock

# Counts a raised alert by rule and severity.
AlertCounter = Callable[[str, str], None]
# Writes, in the raising transaction, what is owed to others of new alerts
# (the webhook outbox, app.webhooks).
AlertOutbox = Callable[[Transaction, Sequence[Alert]], None]


class AlertRaiser:
    def __init__(
        self,
        rules: AlertRules,
        clock: Clock,
        count: AlertCounter,
        on_raised: Callable[[], None] = lambda: None,
        outbox: AlertOutbox = lambda tx, alerts: None,
    ) -> None:
        self.rules = rules
        self._clock = clock
        self._count = count
        self._on_raised = on_raised
        self._outbox = outbox

    def raise_alerts(self, tx: Transaction, alerts: Iterable[Alert]) -> list[Alert]:
        """Insert each alert unless raised before; the new ones, as stored."""
        raised = [stored for alert in alerts if (stored := tx.alerts.insert_once(alert))]
        if raised:
            self._outbox(tx, raised)
            tx.after_commit(lambda: self._committed(raised))
        return raised

    def raise_threshold_alerts(
        self,
        tx: Transaction,
        windows_before: Sequence[WindowSpend],
        windows_after: Sequence[WindowSpend],
    ) -> list[Alert]:
        """The threshold alerts of windows that crossed one between before and
        after (the same windows; a window missing from before had no spend)."""
        found = threshold_alerts(self.rules, windows_before, windows_after, self._clock.now())
        return self.raise_alerts(tx, found) if found else []

    def raise_after_settle(self, tx: Transaction, after: Sequence[WindowSpend], spend: int) -> None:
        """A commit's alerts: the windows as the settle returned them, less
        the spend it added, were the windows before (WindowSpend.before_spend)."""
        if spend > 0:
            before = [w.before_spend(spend) for w in after]
            self.raise_threshold_alerts(tx, before, after)

    def raise_after_limit_change(
        self, tx: Transaction, before: Sequence[WindowLimit], after: Sequence[WindowLimit]
    ) -> None:
        """A limit change's alerts: the same spend against the old and new
        limits. The windows' stored limits are updated, so the next commit
        judges its spend against the new ones."""
        old = {w.key: w.limit_micros for w in before}
        changed = [w for w in after if old.get(w.key) != w.limit_micros]
        if not changed:
            return
        tx.windows.store_limits((w.key, w.limit_micros) for w in changed)
        keys = [w.key for w in changed]
        counters = tx.windows.load_counters(keys)
        credits = tx.credits.load_active_amounts(keys, self._clock.now())
        self.raise_threshold_alerts(
            tx,
            [
                _spend(w.key, old.get(w.key, w.limit_micros) + credits[w.key], counters[w.key])
                for w in changed
            ],
            [_spend(w.key, w.limit_micros + credits[w.key], counters[w.key]) for w in changed],
        )

    def _committed(self, raised: list[Alert]) -> None:
        for alert in raised:
            self._count(alert.rule, alert.severity.value)  # rules are a fixed set
        self._on_raised()


def _spend(key: WindowKey, limit: int, counters: Counters) -> WindowSpend:
    return WindowSpend(key, limit, counters.spent_micros)
