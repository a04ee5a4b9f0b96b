"""Alerts as their readers see them: ListAlerts, WatchAlerts, and silences.

A user sees and silences only its own alerts (subject = its id); an admin
names any user, the system, or (to read) nobody: everyone. WatchAlerts polls
the table (store.alerts explains why it never skips a row committed late)
and, between polls, waits on AlertSignal, which this process's raisers ring
after each commit, so an alert raised here is sent at once and one raised in
another replica within a poll interval.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.budget.app.paging import Pager
from services.budget.domain.alert_rules import AlertRules
from services.budget.domain.alerts import SYSTEM_SUBJECT, Alert, AlertFilter, StreamCursor
from services.budget.domain.usage import ID_LENGTH
from services.budget.domain.validation import Violations
from services.budget.store.unit_of_work import BudgetStore
from services.common.clock import Clock
from services.common.errors import NotFound, PermissionDenied, QuotaExceeded

STREAM_BATCH = 100


@dataclass(frozen=True)
class SubjectRequest:
    """Whose alerts a request names: a user, the system, or (None, False) nobody."""

    user_id: str | None = None
    system: bool = False


@dataclass(frozen=True)
class AlertPage:
    alerts: list[Alert]
    next_page_token: str


@dataclass(frozen=True)
class Silence:
    rule: str
    subject: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None


class AlertSignal:
    """Rung after a transaction that raised alerts commits; streams wait on it
    between polls."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation = 0

    def ring(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def generation(self) -> int:
        with self._changed:
            return self._generation

    def wait(self, since: int, timeout: float) -> None:
        """Until rung after `since` (a generation read before the last poll) or timeout."""
        with self._changed:
            self._changed.wait_for(lambda: self._generation != since, timeout)


WATCHERS_EXHAUSTED = "ALERT_WATCHERS_EXHAUSTED"


class Watchers:
    """How many WatchAlerts streams this process serves: each holds a server
    thread for as long as it lasts, so they may take only a share of the pool."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._count = 0
        self._lock = threading.Lock()

    def check_room(self) -> None:
        with self._lock:
            if self._count >= self._limit:
                raise QuotaExceeded(
                    f"this replica already serves {self._limit} alert streams; retry later",
                    reason=WATCHERS_EXHAUSTED,
                    subject="alert_watchers",
                    retry_after=timedelta(seconds=5),
                )

    @contextmanager
    def counted(self) -> Iterator[None]:
        with self._lock:
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1


def resolve_subject(
    only_user: str | None, requested: SubjectRequest, violations: Violations, *, required: bool
) -> str | None:
    """The subject a call reads or changes: a user's own id for a user
    caller, else what it named (None: every subject, when not required)."""
    if only_user is not None:
        if requested.system or (requested.user_id not in (None, "", only_user)):
            raise PermissionDenied("a user sees and silences only its own alerts")
        return only_user
    if requested.system:
        return SYSTEM_SUBJECT
    if requested.user_id:
        violations.identifier("user_id", requested.user_id)
        if len(requested.user_id) > ID_LENGTH:
            violations.add("user_id", f"at most {ID_LENGTH} characters")
        return requested.user_id
    if required:
        violations.add("user_id", "name a user, or set system")
    return None


def _before_id(position: Mapping[str, object]) -> int:
    return int(str(position["i"]))


def parse_cursor(violations: Violations, cursor: str) -> StreamCursor | None:
    """A WatchAlerts cursor ("<xact_id>.<id>"); None: from now on."""
    if not cursor:
        return None
    try:
        xact, id_ = (int(part) for part in cursor.split("."))
    except ValueError:
        violations.add("cursor", "not a cursor this service issued")
        return None
    return StreamCursor(xact, id_)


def format_cursor(cursor: StreamCursor) -> str:
    return f"{cursor.xact_id}.{cursor.id}"


class AlertViews:
    def __init__(
        self,
        store: BudgetStore,
        rules: AlertRules,
        clock: Clock,
        pager: Pager,
        signal: AlertSignal,
        poll_seconds: float,
        max_watchers: int,
    ) -> None:
        self._watchers = Watchers(max_watchers)
        self._store = store
        self._rules = rules
        self._clock = clock
        self._pager = pager
        self._signal = signal
        self._poll_seconds = poll_seconds

    def list_alerts(
        self,
        subject: str | None,
        where: AlertFilter,
        violations: Violations,
        *,
        page_size: int,
        page_token: str,
    ) -> AlertPage:
        if where.start and where.end and where.end <= where.start:
            violations.add("end_time", "must be after start_time")
        where = AlertFilter(subject, where.rule, where.severity, where.start, where.end)
        query = {
            "subject": subject,
            "rule": where.rule,
            "severity": where.severity,
            "start": where.start.isoformat() if where.start else "",
            "end": where.end.isoformat() if where.end else "",
        }
        page = self._pager.open(violations, page_size, page_token, query)
        before_id = page.after(violations, _before_id)
        violations.raise_if_any()
        with self._store.transaction() as tx:
            alerts = tx.alert_queries.load_page(where, before_id, page.fetch_limit)
        kept, token = self._pager.close(page, alerts, lambda alert: {"i": alert.id})
        return AlertPage(kept, token)

    def watch(
        self, subject: str | None, cursor: str, violations: Violations, active: Callable[[], bool]
    ) -> Iterator[tuple[Alert, str]]:
        """Validates now, then streams (alert, its cursor) while active()."""
        after = parse_cursor(violations, cursor)
        violations.raise_if_any()
        self._watchers.check_room()
        if after is None:
            after = self._stream_end(subject)
        return self._stream(subject, after, active)

    def _stream_end(self, subject: str | None) -> StreamCursor:
        """The cursor after every alert the stream could send now: "from now on"."""
        with self._store.transaction() as tx:
            return tx.alert_queries.load_stream_end(subject)

    def _stream(
        self, subject: str | None, after: StreamCursor, active: Callable[[], bool]
    ) -> Iterator[tuple[Alert, str]]:
        with self._watchers.counted():
            yield from self._poll(subject, after, active)

    def _poll(
        self, subject: str | None, after: StreamCursor, active: Callable[[], bool]
    ) -> Iterator[tuple[Alert, str]]:
        while active():
            seen = self._signal.generation()
            with self._store.transaction() as tx:
                batch = tx.alert_queries.load_stream(subject, after, STREAM_BATCH)
            for alert, position in batch:
                after = position
                yield alert, format_cursor(position)
            if len(batch) < STREAM_BATCH:
                self._signal.wait(seen, self._poll_seconds)

    def silence(
        self,
        actor: str,
        subject: str | None,
        rule: str,
        until: datetime | None,
        violations: Violations,
    ) -> Silence:
        now = self._clock.now()
        self._check_rule(rule, violations)
        if until is not None and until <= now:
            violations.add("expire_time", "must be in the future")
        violations.raise_if_any()
        assert subject is not None  # required: resolve_subject added a violation otherwise
        with self._store.transaction() as tx:
            tx.alert_queries.store_silence(rule, subject, actor, now, until)
        return Silence(rule, subject, actor, now, until)

    def unsilence(self, subject: str | None, rule: str, violations: Violations) -> None:
        self._check_rule(rule, violations)
        violations.raise_if_any()
        assert subject is not None
        with self._store.transaction() as tx:
            if not tx.alert_queries.delete_silence(rule, subject):
                raise NotFound(f"no silence of {rule!r} for this subject")

    def _check_rule(self, rule: str, violations: Violations) -> None:
        if rule not in self._rules.rule_names():
            names = ", ".join(sorted(self._rules.rule_names()))
            violations.add("rule", f"one of: {names}")
