"""Users' blocks, and the one query Admit and GetLimits start with: the user's
stored settings, the system limits and the user's block in force."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Executable,
    and_,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from services.budget.domain.blocks import Block, BlockSource
from services.budget.domain.limits import LimitValues, UserSettings
from services.budget.store.limits import (
    SYSTEM,
    SYSTEM_LIMITS_ID,
    USER_COLUMNS,
    USERS,
    LimitsStore,
    system_limits_of,
    user_settings_of,
)
from services.budget.store.models import BlockRow, table
from services.common.db import UtcDateTime

BLOCKS = table(BlockRow)
_BLOCK_LABELS = [column.label(f"block_{column.name}") for column in BLOCKS.c]


def _in_force() -> ColumnElement[bool]:
    """Not lifted, not expired at the parameter now."""
    now = bindparam("now", type_=UtcDateTime())
    return and_(
        BLOCKS.c.lifted_at.is_(None), or_(BLOCKS.c.expires_at.is_(None), BLOCKS.c.expires_at > now)
    )


@functools.cache
def _context() -> Executable:
    user: BindParameter[str] = bindparam("user_id")
    joined = SYSTEM.outerjoin(USERS, USERS.c.user_id == user).outerjoin(
        BLOCKS, and_(BLOCKS.c.user_id == user, _in_force())
    )
    return (
        select(*USER_COLUMNS, SYSTEM.c.daily_limit_micros, SYSTEM.c.monthly_limit_micros)
        .add_columns(*_BLOCK_LABELS)
        .select_from(joined)
        .where(SYSTEM.c.id == SYSTEM_LIMITS_ID)
        .order_by(BLOCKS.c.id.desc())
        .limit(1)
    )


def _block(row: Any, prefix: str = "") -> Block:
    def get(name: str) -> Any:
        return getattr(row, prefix + name)

    return Block(
        id=int(get("id")),
        user_id=get("user_id"),
        reason=get("reason"),
        source=BlockSource(get("source")),
        created_at=get("created_at"),
        expires_at=get("expires_at"),
        created_by=get("created_by"),
        level=int(get("level")),
        lifted_at=get("lifted_at"),
    )


class BlockStore:
    def __init__(self, session: Session, dialect: str) -> None:
        self.session = session
        self._dialect = dialect

    def load_context(
        self, user_id: str, now: datetime
    ) -> tuple[UserSettings, LimitValues, Block | None]:
        """The user's settings, the system limits and the user's block in
        force (the newest, should there be several), in one query."""
        row = self.session.execute(_context(), {"user_id": user_id, "now": now}).first()
        if row is None:  # the system row was deleted by hand: configured limits
            user = LimitsStore(self.session, self._dialect).load_user_settings(user_id)
            return user, LimitValues(), self.load_in_force(user_id, now)
        block = _block(row, "block_") if row.block_id is not None else None
        return user_settings_of(user_id, row), system_limits_of(row), block

    def load_in_force(self, user_id: str, now: datetime) -> Block | None:
        row = self.session.execute(
            select(BLOCKS)
            .where(BLOCKS.c.user_id == user_id, _in_force())
            .order_by(BLOCKS.c.id.desc())
            .limit(1),
            {"now": now},
        ).first()
        return _block(row) if row else None

    def load_last_automatic(self, user_id: str) -> Block | None:
        """The user's newest automatic block, in force or not."""
        row = self.session.execute(
            select(BLOCKS)
            .where(BLOCKS.c.user_id == user_id, BLOCKS.c.source == BlockSource.AUTOMATIC.value)
            .order_by(BLOCKS.c.id.desc())
            .limit(1)
        ).first()
        return _block(row) if row else None

    def store_new(self, block: Block) -> Block:
        """Add a block; returns it with the id the database gave it."""
        row = self.session.execute(
            insert(BLOCKS)
            .values(
                user_id=block.user_id,
                reason=block.reason,
                source=block.source.value,
                created_at=block.created_at,
                expires_at=block.expires_at,
                created_by=block.created_by,
                level=block.level,
            )
            .returning(*BLOCKS.c)
        ).one()
        return _block(row)

    def lift(self, block_id: int, now: datetime, lifted_by: str) -> None:
        self.session.execute(
            update(BLOCKS)
            .where(BLOCKS.c.id == block_id, BLOCKS.c.lifted_at.is_(None))
            .values(lifted_at=now, lifted_by=lifted_by)
        )

    def load_page(self, now: datetime, before_id: int | None, limit: int) -> list[Block]:
        """Up to limit blocks in force at now, newest first, older than before_id."""
        statement = select(BLOCKS).where(_in_force())
        if before_id is not None:
            statement = statement.where(BLOCKS.c.id < before_id)
        statement = statement.order_by(BLOCKS.c.id.desc()).limit(limit)
        return [_block(row) for row in self.session.execute(statement, {"now": now})]
