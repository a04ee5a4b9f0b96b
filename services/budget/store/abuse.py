"""Abuse triggers' counts: one upsert a counted event, and the cache-busting
count of a fingerprint's prompts. Statements built once.

A count's upsert locks the user's row of that trigger until the transaction
ends (PostgreSQL; SQLite serializes writers), so concurrent events of one
user are counted one after the other, each seeing the count the last one
left: exactly one of them reaches the threshold.
"""

from __future__ import annotations

import functools
from datetime import datetime

from sqlalchemy import (
    Executable,
    TextClause,
    bindparam,
    distinct,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from services.budget.domain.abuse import Trigger
from services.budget.domain.admission import EPOCH
from services.budget.store.models import AbuseStreakRow, UsageRow, table
from services.common.db import UtcDateTime

STREAKS = table(AbuseStreakRow)
USAGE = table(UsageRow)
CACHE_BUSTING = Trigger.CACHE_BUSTING.value


@functools.cache
def _count_event(ends_on_success: bool) -> TextClause:
    """Count one event: a new streak (1, from now) when the row is new, was
    reset (0), its first event is a window old (at or before :floor), or
    (ends_on_success) the user has a successful record since its last event;
    one more otherwise. Returns the count."""
    row = "budget_abuse_streaks"
    restart = f"{row}.events = 0 OR {row}.window_start <= :floor"
    if ends_on_success:
        restart += (
            " OR EXISTS (SELECT 1 FROM budget_usage_records r WHERE r.user_id = :user_id"
            f" AND r.created_at >= {row}.last_at AND r.success)"
        )
    sql = f"""
INSERT INTO budget_abuse_streaks (user_id, kind, events, window_start, last_at)
VALUES (:user_id, :kind, 1, :now, :now)
ON CONFLICT (user_id, kind) DO UPDATE
SET events = CASE WHEN {restart} THEN 1 ELSE {row}.events + 1 END,
    window_start = CASE WHEN {restart} THEN :now ELSE {row}.window_start END,
    last_at = :now
RETURNING events
"""
    return text(sql).bindparams(
        bindparam("now", type_=UtcDateTime()), bindparam("floor", type_=UtcDateTime())
    )


@functools.cache
def _lock_cache_busting() -> Executable:
    """The user's cache-busting row, created if need be and locked; returns
    when the trigger last blocked the user (the epoch: never)."""
    sql = """
INSERT INTO budget_abuse_streaks (user_id, kind, events, window_start, last_at)
VALUES (:user_id, :kind, 0, :epoch, :now)
ON CONFLICT (user_id, kind) DO UPDATE SET last_at = :now
RETURNING window_start
"""
    return (
        text(sql)
        .bindparams(
            bindparam("now", type_=UtcDateTime()),
            bindparam("epoch", type_=UtcDateTime()),
        )
        .columns(window_start=UtcDateTime())
    )


@functools.cache
def _count_prompts() -> Executable:
    """How many different prompts the user's generated records of one
    fingerprint have, after an instant (the partial fingerprint index)."""
    return select(func.count(distinct(USAGE.c.prompt))).where(
        USAGE.c.user_id == bindparam("user_id"),
        USAGE.c.prompt_fingerprint == bindparam("fingerprint"),
        USAGE.c.created_at > bindparam("since", type_=UtcDateTime()),
    )


class AbuseStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def count_event(
        self, user_id: str, kind: str, now: datetime, floor: datetime, ends_on_success: bool
    ) -> int:
        """Count one event toward the user's streak of kind; the streak's
        count with it."""
        params = {"user_id": user_id, "kind": kind, "now": now, "floor": floor}
        return int(self.session.execute(_count_event(ends_on_success), params).scalar_one())

    def reset(self, user_id: str, kind: str) -> None:
        self.session.execute(
            update(STREAKS)
            .where(STREAKS.c.user_id == user_id, STREAKS.c.kind == kind)
            .values(events=0)
        )

    def count_prompts(self, user_id: str, fingerprint: str, since: datetime) -> int:
        params = {"user_id": user_id, "fingerprint": fingerprint, "since": since}
        return int(self.session.execute(_count_prompts(), params).scalar_one())

    def lock_cache_busting(self, user_id: str, now: datetime) -> datetime:
        """Lock the user's cache-busting row; when it last blocked the user."""
        params = {"user_id": user_id, "kind": CACHE_BUSTING, "now": now, "epoch": EPOCH}
        blocked_at: datetime = self.session.execute(_lock_cache_busting(), params).scalar_one()
        return blocked_at

    def mark_cache_busting_block(self, user_id: str, now: datetime) -> None:
        """Records up to now have blocked the user once; never count them again."""
        self.session.execute(
            update(STREAKS)
            .where(STREAKS.c.user_id == user_id, STREAKS.c.kind == CACHE_BUSTING)
            .values(window_start=now)
        )
