"""The one ON CONFLICT-capable INSERT the repositories use, on either backend."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.common.db import dialect_name, insert_for

Upsert = postgresql.Insert | sqlite.Insert


def upsert_into(session: Session, table: Any) -> Upsert:
    """services.common.db.insert_for for this session's backend, typed as what it
    returns: both dialects' Insert have on_conflict_do_nothing/_update and excluded."""
    statement = insert_for(dialect_name(session), table)
    assert isinstance(statement, (postgresql.Insert, sqlite.Insert))
    return statement
