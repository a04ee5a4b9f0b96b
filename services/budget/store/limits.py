"""Users' stored settings (tier, an admin's overrides, their own caps) and the
admin-set system limits."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, Select, bindparam, select, update
from sqlalchemy.orm import Session

from services.budget.domain.limits import LimitValues, RateLimitValues, Tier, UserSettings
from services.budget.store.models import SystemLimitsRow, UserRow, insert_or_skip, table

USERS = table(UserRow)
SYSTEM = table(SystemLimitsRow)
SYSTEM_LIMITS_ID = 1

USER_COLUMNS = (
    USERS.c.tier,
    USERS.c.override_daily_micros,
    USERS.c.override_monthly_micros,
    USERS.c.override_per_generation_micros,
    USERS.c.cap_daily_micros,
    USERS.c.cap_monthly_micros,
    USERS.c.cap_per_generation_micros,
    USERS.c.override_requests_per_minute,
    USERS.c.override_request_burst,
    USERS.c.override_generations_per_hour,
    USERS.c.override_max_concurrent_generations,
)


def settings_select(*extra: Any) -> Select[Any]:
    """The user's (parameter user_id) stored settings and the system limits in
    one row, with the extra columns: the system row always exists; the user's
    only when something was stored for it."""
    return (
        select(*USER_COLUMNS, SYSTEM.c.daily_limit_micros, SYSTEM.c.monthly_limit_micros, *extra)
        .select_from(SYSTEM.outerjoin(USERS, USERS.c.user_id == bindparam("user_id")))
        .where(SYSTEM.c.id == SYSTEM_LIMITS_ID)
    )


@dataclass(frozen=True)
class _Statements:
    limit_settings: Executable
    add_user: Executable
    add_system_limits: Executable


@functools.cache
def _statements(dialect: str) -> _Statements:
    return _Statements(
        limit_settings=settings_select(),
        add_user=insert_or_skip(dialect, USERS, USERS.c.user_id),
        add_system_limits=insert_or_skip(dialect, SYSTEM, SYSTEM.c.id).values(id=SYSTEM_LIMITS_ID),
    )


def user_settings_of(user_id: str, row: Any) -> UserSettings:
    """A user's settings from a Row with USER_COLUMNS (None: nothing stored)."""
    if row is None:
        return UserSettings(user_id)
    return UserSettings(
        user_id=user_id,
        tier=Tier(row.tier) if row.tier else None,
        overrides=LimitValues(
            row.override_daily_micros,
            row.override_monthly_micros,
            row.override_per_generation_micros,
        ),
        cap=LimitValues(
            row.cap_daily_micros, row.cap_monthly_micros, row.cap_per_generation_micros
        ),
        rate_overrides=RateLimitValues(
            row.override_requests_per_minute,
            row.override_request_burst,
            row.override_generations_per_hour,
            row.override_max_concurrent_generations,
        ),
    )


def system_limits_of(row: Any) -> LimitValues:
    """The system limits from a Row with their two columns (None: none stored)."""
    if row is None:
        return LimitValues()
    return LimitValues(row.daily_limit_micros, row.monthly_limit_micros)


class LimitsStore:
    def __init__(self, session: Session, dialect: str) -> None:
        self.session = session
        self._sql = _statements(dialect)

    def load_limit_settings(self, user_id: str) -> tuple[UserSettings, LimitValues]:
        """The user's stored settings and the system limits, in one query."""
        row = self.session.execute(self._sql.limit_settings, {"user_id": user_id}).first()
        if row is None:  # the system row was deleted by hand: configured limits
            return self.load_user_settings(user_id), LimitValues()
        return user_settings_of(user_id, row), system_limits_of(row)

    def load_user_settings(self, user_id: str, *, for_update: bool = False) -> UserSettings:
        statement = select(*USER_COLUMNS).where(USERS.c.user_id == user_id)
        if for_update:
            statement = statement.with_for_update()
        return user_settings_of(user_id, self.session.execute(statement).first())

    def load_users_settings(self, user_ids: Sequence[str]) -> list[UserSettings]:
        """Several users' stored settings, in the order given, in one query."""
        rows = self.session.execute(
            select(USERS.c.user_id, *USER_COLUMNS).where(USERS.c.user_id.in_(user_ids))
        ).all()
        found = {row.user_id: row for row in rows}
        return [user_settings_of(user_id, found.get(user_id)) for user_id in user_ids]

    def lock_user(self, user_id: str, now: datetime) -> UserSettings:
        """The user's settings, its row created if need be and locked until the
        transaction ends (PostgreSQL; SQLite's BEGIN IMMEDIATE serializes writers)."""
        self.session.execute(
            self._sql.add_user,
            {"user_id": user_id, "tier": None, "created_at": now, "updated_at": now},
        )
        return self.load_user_settings(user_id, for_update=True)

    def store_user_settings(self, settings: UserSettings, now: datetime) -> None:
        """Store a user's settings; its row must exist (lock_user)."""
        self.session.execute(
            update(UserRow)
            .where(UserRow.user_id == settings.user_id)
            .values(
                tier=settings.tier.value if settings.tier else None,
                override_daily_micros=settings.overrides.daily_micros,
                override_monthly_micros=settings.overrides.monthly_micros,
                override_per_generation_micros=settings.overrides.per_generation_micros,
                cap_daily_micros=settings.cap.daily_micros,
                cap_monthly_micros=settings.cap.monthly_micros,
                cap_per_generation_micros=settings.cap.per_generation_micros,
                override_requests_per_minute=settings.rate_overrides.requests_per_minute,
                override_request_burst=settings.rate_overrides.request_burst,
                override_generations_per_hour=settings.rate_overrides.generations_per_hour,
                override_max_concurrent_generations=(
                    settings.rate_overrides.max_concurrent_generations
                ),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )

    def lock_system_limits(self) -> LimitValues:
        """The admin-set system limits, locked until the transaction ends."""
        self.session.execute(self._sql.add_system_limits)
        row = self.session.execute(
            select(SYSTEM.c.daily_limit_micros, SYSTEM.c.monthly_limit_micros)
            .where(SYSTEM.c.id == SYSTEM_LIMITS_ID)
            .with_for_update()
        ).first()
        return system_limits_of(row)

    def store_system_limits(self, limits: LimitValues, now: datetime) -> None:
        self.session.execute(
            update(SystemLimitsRow)
            .where(SystemLimitsRow.id == SYSTEM_LIMITS_ID)
            .values(
                daily_limit_micros=limits.daily_micros,
                monthly_limit_micros=limits.monthly_micros,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
