"""The alert rules: when a window's spend crosses a threshold, when its pace
runs it out before it resets, and when a day looks unusual. Plain Python.

Rules and their names (the `rule` of an alert):
- user_limit_<p>: a user's daily or monthly spend reached p% of its
  effective limit (p in AlertRules.user_thresholds; 50, 80, 100).
- system_limit_<p>: the system's spend reached p% of its limit
  (AlertRules.system_thresholds).
- burn_rate: at the pace of the last burn_rate_hours, a window's limit (the
  system's, or the effective limit of a user who spent in those hours) is
  reached before the window ends.
- unusual_spend, unusual_generations: a user's day is above factor x the
  median of its baseline_days previous days, and above a floor.
- failure_spike, content_policy_spike: a share of the last hour's attempts
  failed (or were refused by the provider's content policy).
- cache_hit_collapse: the last hour's cache hit rate fell below a share of
  the baseline days' rate.

Each is raised once per rule, subject and period (period_key): threshold and
burn-rate alerts per window, pattern alerts per day.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.budget.domain.alerts import SYSTEM_SUBJECT, Alert, AlertWindow, Severity
from services.budget.domain.windows import Period, Scope, Span, WindowKey

BURN_RATE = "burn_rate"
UNUSUAL_SPEND = "unusual_spend"
UNUSUAL_GENERATIONS = "unusual_generations"
FAILURE_SPIKE = "failure_spike"
CONTENT_POLICY_SPIKE = "content_policy_spike"
CACHE_HIT_COLLAPSE = "cache_hit_collapse"
PATTERN_RULES = (
    UNUSUAL_SPEND,
    UNUSUAL_GENERATIONS,
    FAILURE_SPIKE,
    CONTENT_POLICY_SPIKE,
    CACHE_HIT_COLLAPSE,
)


@dataclass(frozen=True)
class AlertRules:
    """The rules' settings (BudgetSettings reads them; README lists them)."""

    user_thresholds: tuple[int, ...] = (50, 80, 100)
    system_thresholds: tuple[int, ...] = (80, 100)
    burn_rate_hours: int = 3
    unusual_factor: int = 5
    baseline_days: int = 14
    unusual_spend_floor_micros: int = 1_000_000
    unusual_generations_floor: int = 50
    spike_percent: int = 25
    spike_min_attempts: int = 20
    cache_collapse_percent: int = 50
    cache_min_lookups: int = 20

    def rule_names(self) -> frozenset[str]:
        """Every rule a silence may name."""
        return frozenset(
            [f"user_limit_{p}" for p in self.user_thresholds]
            + [f"system_limit_{p}" for p in self.system_thresholds]
            + [BURN_RATE, *PATTERN_RULES]
        )


@dataclass(frozen=True)
class WindowSpend:
    """A window's spent against its effective limit (with the credits that
    count), at one moment."""

    key: WindowKey
    limit_micros: int
    spent_micros: int
    # Credits granted to the window that no longer count (expired before its
    # reset): its limit was that much higher while they counted.
    lapsed_credit_micros: int = 0

    def reached(self, percent: int) -> bool:
        return self.spent_micros > 0 and self.spent_micros * 100 >= percent * self.limit_micros

    def before_spend(self, spend_micros: int) -> WindowSpend:
        """The window before a spend, judged against the highest limit it had
        (its lapsed credits counted back in). A credit's expiry lowers the
        limit with no transaction to cross a threshold: so the first commit
        after it raises what the lower limit makes reached (once: the alert's
        key)."""
        return WindowSpend(
            self.key,
            self.limit_micros + self.lapsed_credit_micros,
            self.spent_micros - spend_micros,
        )


def usd(micros: int) -> str:
    """Micros as dollars and cents, without a float: 1234567 -> "1.23 USD"."""
    return f"{micros // 1_000_000}.{micros % 1_000_000 // 10_000:02d} USD"


def alert_window(span: Span) -> AlertWindow:
    return AlertWindow.DAILY if span is Span.DAY else AlertWindow.MONTHLY


def _subject(key: WindowKey) -> str:
    return key.subject if key.scope is Scope.USER else SYSTEM_SUBJECT


def _whose(key: WindowKey) -> str:
    return f"user {key.subject}" if key.scope is Scope.USER else "system"


def _severity(percent: int) -> Severity:
    if percent >= 100:
        return Severity.CRITICAL
    return Severity.WARNING if percent >= 80 else Severity.INFO


def threshold_alerts(
    rules: AlertRules, before: Sequence[WindowSpend], after: Sequence[WindowSpend], now: datetime
) -> list[Alert]:
    """The alerts of the thresholds each window crossed between before and
    after (a commit's spend, or a limit change): for each window only the
    highest threshold crossed, since reaching 100% says 80% too."""
    earlier = {window.key: window for window in before}
    alerts = []
    for window in after:
        prior = earlier.get(window.key)
        user = window.key.scope is Scope.USER
        thresholds = rules.user_thresholds if user else rules.system_thresholds
        crossed = [p for p in thresholds if window.reached(p) and not (prior and prior.reached(p))]
        if crossed:
            alerts.append(_threshold_alert(window, max(crossed), now))
    return alerts


def _threshold_alert(window: WindowSpend, percent: int, now: datetime) -> Alert:
    key = window.key
    span = alert_window(key.span)
    prefix = "user" if key.scope is Scope.USER else "system"
    return Alert(
        rule=f"{prefix}_limit_{percent}",
        subject=_subject(key),
        window=span,
        period_key=key.start_date.isoformat(),
        severity=_severity(percent),
        message=(
            f"{_whose(key)} {span.value} budget reached {percent}% of its limit: "
            f"spent {usd(window.spent_micros)} of {usd(window.limit_micros)}"
        ),
        raised_at=now,
        details={
            "threshold_percent": str(percent),
            "spent_micros": str(window.spent_micros),
            "limit_micros": str(window.limit_micros),
        },
    )


def exhaustion_at(
    window: WindowSpend, period: Period, paced_micros: int, pace: timedelta, now: datetime
) -> datetime | None:
    """When the window's limit is reached if it keeps spending paced_micros
    per pace; None when that is not before the window ends (or it spends
    nothing), now when the limit is already reached."""
    remaining = window.limit_micros - window.spent_micros
    if remaining <= 0:
        return now
    if paced_micros <= 0:
        return None
    # In whole microseconds: a slow pace's time to exhaustion overflows timedelta.
    wait = pace // timedelta(microseconds=1) * remaining // paced_micros
    if wait >= (period.end - now) // timedelta(microseconds=1):
        return None
    return now + timedelta(microseconds=wait)


def burn_rate_alert(
    window: WindowSpend, at: datetime, hours: int, zone: ZoneInfo, now: datetime
) -> Alert:
    key = window.key
    span = alert_window(key.span)
    local = at.astimezone(zone)
    when = f"at {local:%H:%M}" if key.span is Span.DAY else f"on {local:%b} {local.day}"
    return Alert(
        rule=BURN_RATE,
        subject=_subject(key),
        window=span,
        period_key=key.start_date.isoformat(),
        severity=Severity.WARNING,
        message=f"{_whose(key)} {span.value} budget runs out {when} at this pace",
        raised_at=now,
        details={
            "exhausted_at": at.isoformat(),
            "pace_hours": str(hours),
            "spent_micros": str(window.spent_micros),
            "limit_micros": str(window.limit_micros),
        },
    )


# Pattern rules


@dataclass(frozen=True)
class UserDay:
    """A user's cost and generations of one day."""

    user_id: str
    cost_micros: int
    generations: int


def unusual_day_alerts(
    rules: AlertRules,
    day: date,
    today: UserDay,
    history: Mapping[date, UserDay],
    now: datetime,
) -> list[Alert]:
    """A user's day far above its own baseline: the median of its
    baseline_days previous days (a day without usage counts as 0)."""
    days = [day - timedelta(days=n) for n in range(1, rules.baseline_days + 1)]
    idle = UserDay(today.user_id, 0, 0)
    past = [history.get(d, idle) for d in days]
    checks = (
        (
            UNUSUAL_SPEND,
            today.cost_micros,
            [d.cost_micros for d in past],
            rules.unusual_spend_floor_micros,
            usd,
        ),
        (
            UNUSUAL_GENERATIONS,
            today.generations,
            [d.generations for d in past],
            rules.unusual_generations_floor,
            str,
        ),
    )
    alerts = []
    for rule, value, baseline, floor, show in checks:
        median = int(statistics.median(baseline)) if baseline else 0
        if value >= floor and value > rules.unusual_factor * median:
            what = "spend" if rule == UNUSUAL_SPEND else "generations"
            alerts.append(
                Alert(
                    rule=rule,
                    subject=today.user_id,
                    window=AlertWindow.NONE,
                    period_key=day.isoformat(),
                    severity=Severity.WARNING,
                    message=(
                        f"user {today.user_id} {what} today is {show(value)}, more than "
                        f"{rules.unusual_factor}x its {rules.baseline_days}-day median "
                        f"of {show(median)}"
                    ),
                    raised_at=now,
                    details={"today": str(value), "median": str(median)},
                )
            )
    return alerts


@dataclass(frozen=True)
class RecentAttempts:
    """The whole system's attempts of the last hour."""

    attempts: int  # records of a provider attempt (generated, failed, fallback, abandoned)
    failures: int
    content_policy: int
    cache_hits: int


def spike_alerts(
    rules: AlertRules, recent: RecentAttempts, day: date, now: datetime
) -> list[Alert]:
    """Failures or content-policy refusals at or above spike_percent of the
    last hour's attempts (at least spike_min_attempts of them)."""
    if recent.attempts < rules.spike_min_attempts or rules.spike_percent <= 0:
        return []
    alerts = []
    for rule, count, what in (
        (FAILURE_SPIKE, recent.failures, "failed"),
        (CONTENT_POLICY_SPIKE, recent.content_policy, "were refused by the content policy"),
    ):
        if count * 100 >= rules.spike_percent * recent.attempts:
            alerts.append(
                _system_alert(
                    rule,
                    day,
                    f"{count} of the last hour's {recent.attempts} generation attempts {what}",
                    {"count": str(count), "attempts": str(recent.attempts)},
                    now,
                )
            )
    return alerts


def cache_collapse_alert(
    rules: AlertRules,
    recent: RecentAttempts,
    baseline: tuple[int, int],
    day: date,
    now: datetime,
) -> Alert | None:
    """The last hour's hit rate below cache_collapse_percent of the baseline
    days' rate; baseline is (hits, lookups) of those days."""
    lookups = recent.cache_hits + recent.attempts
    base_hits, base_lookups = baseline
    if lookups < rules.cache_min_lookups or base_lookups <= 0 or base_hits <= 0:
        return None
    # hits/lookups < percent/100 * base_hits/base_lookups, in integers
    if recent.cache_hits * 100 * base_lookups >= rules.cache_collapse_percent * base_hits * lookups:
        return None
    return _system_alert(
        CACHE_HIT_COLLAPSE,
        day,
        f"cache hit rate of the last hour is {recent.cache_hits * 100 // lookups}%, against "
        f"{base_hits * 100 // base_lookups}% over the previous {rules.baseline_days} days",
        {"hits": str(recent.cache_hits), "lookups": str(lookups)},
        now,
    )


def _system_alert(
    rule: str, day: date, message: str, details: dict[str, str], now: datetime
) -> Alert:
    return Alert(
        rule=rule,
        subject=SYSTEM_SUBJECT,
        window=AlertWindow.NONE,
        period_key=day.isoformat(),
        severity=Severity.WARNING,
        message=message,
        raised_at=now,
        details=details,
    )


# GetLimits' warnings


@dataclass(frozen=True)
class WindowWarning:
    """What GetLimits tells a user about one window: the highest threshold its
    spend reached (0: none), that in words, and when the limit runs out at the
    current pace (None: not before the window resets)."""

    threshold_percent: int = 0
    message: str = ""
    exhausted_at: datetime | None = None


def window_warning(
    rules: AlertRules,
    window: WindowSpend,
    period: Period,
    paced_micros: int,
    pace: timedelta,
    now: datetime,
) -> WindowWarning:
    user = window.key.scope is Scope.USER
    thresholds = rules.user_thresholds if user else rules.system_thresholds
    reached = max((p for p in thresholds if window.reached(p)), default=0)
    span = alert_window(window.key.span).value
    message = ""
    if reached:
        whose = "your" if user else "the service's"
        message = (
            f"{whose} {span} limit is reached"
            if reached >= 100
            else f"{whose} {span} limit is {reached}% used"
        )
    return WindowWarning(reached, message, exhaustion_at(window, period, paced_micros, pace, now))
