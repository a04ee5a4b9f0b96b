"""Database engines and sessions for SQLite (embedded) and PostgreSQL.

Built by the composition roots, never at import time. For SQLite every
transaction starts with BEGIN IMMEDIATE: it takes the write lock up front, so
two writers queue instead of failing with "database is locked" mid-transaction;
and a WriterGate queues them before that, in this process and across the
processes on one file, so they do not wait in SQLite's sleeping busy handler.
"""

from __future__ import annotations

import fcntl
import os
import select
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Dialect, Engine, create_engine, event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use psycopg 3 for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_db_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalize_url(url)
    if is_sqlite(url):
        return _sqlite_engine(url)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
    )
    event.listen(engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server has closed, found without a round trip:
    an idle connection's socket has nothing to read unless the server ended
    it (a terminated backend, a restart, an idle timeout send their goodbye
    and close). The pool then discards it and checks out another (a fresh
    one if need be), so a dropped connection costs no failed call, and a
    healthy checkout no pre-ping. A connection that dies mid-transaction still
    fails that call cleanly (UNAVAILABLE, nothing half-applied)."""
    if dbapi_connection.closed or _has_pending_input(dbapi_connection.fileno()):
        raise exc.DisconnectionError("the server closed this pooled connection")


def _has_pending_input(fileno: int) -> bool:
    poller = select.poll()
    poller.register(fileno, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


class WriterGate:
    """Lets one write transaction at a time into a SQLite file: a thread lock
    for this process's threads, then an flock on a file beside the database
    for other processes. A waiter wakes within milliseconds of its turn,
    where SQLite's own busy handler sleeps in steps of up to 100 ms; and
    only one thread of each process polls for the file lock."""

    def __init__(self, lock_file: Path | None) -> None:
        self._threads = threading.Lock()
        self._lock_file = lock_file
        self._fd: int | None = None

    def enter(self) -> None:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        if not self._threads.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise sqlite3.OperationalError("database is locked (this process's writers)")
        try:
            self._lock_processes(deadline)
        except BaseException:
            self._threads.release()
            raise

    def leave(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        """Close the lock file (the engine is disposed of)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _lock_processes(self, deadline: float) -> None:
        if self._lock_file is None:
            return
        if self._fd is None:
            self._fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        pause = 0.0002
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError(
                        "database is locked (another process's writers)"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.002)


class _GatedConnection(sqlite3.Connection):
    """A pysqlite connection whose write transaction holds the engine's
    WriterGate from before BEGIN IMMEDIATE until COMMIT or ROLLBACK has run
    (or the connection closes)."""

    gate: WriterGate | None = None
    holds_gate = False

    def enter_gate(self) -> None:
        if self.gate is None or self.holds_gate:
            return
        self.gate.enter()
        self.holds_gate = True

    def leave_gate(self) -> None:
        if self.holds_gate and self.gate is not None:
            self.holds_gate = False
            self.gate.leave()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.leave_gate()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.leave_gate()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leave_gate()


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    # The writers' lock file sits beside the database (none in memory).
    lock_file = Path(f"{database}-writers") if database and database != ":memory:" else None
    if lock_file is not None:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={
            "check_same_thread": False,
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            "factory": _GatedConnection,
        },
    )
    # One gate per engine: an engine is one database file in one process.
    gate = WriterGate(lock_file)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        dbapi_connection.gate = gate
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # With WAL, NORMAL syncs at checkpoints, not at every commit: a
        # commit holds the write lock for microseconds instead of an fsync.
        # The database stays consistent; a power cut (not a crash of the
        # process) may lose the last commits.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(_READS_ONLY):
            # A read takes no write lock, so it needs no turn at the gate.
            connection.exec_driver_sql("BEGIN")
            return
        dbapi_connection = connection.connection.dbapi_connection
        dbapi_connection.enter_gate()
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            dbapi_connection.leave_gate()
            raise

    @event.listens_for(engine, "engine_disposed")
    def _on_dispose(_engine: Any) -> None:
        gate.close()

    return engine


_READS_ONLY = "recipeimage_reads_only"


def begin_reading(session: Session) -> None:
    """Start a session that only reads, before its first statement: on
    PostgreSQL in autocommit (no BEGIN or COMMIT round trip; each statement
    sees what was committed when it began), on SQLite with a deferred BEGIN
    (in WAL mode a reader does not queue behind the writers)."""
    if dialect_name(session) == "postgresql":
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    else:
        session.connection(execution_options={_READS_ONLY: True})


def create_sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def dialect_name(session: Session) -> str:
    """'postgresql' or 'sqlite': the backend this session talks to."""
    return session.get_bind().dialect.name


Upsert = postgresql.Insert | sqlite.Insert


def insert_for(dialect: str, table: Any) -> Upsert:
    """An INSERT that knows ON CONFLICT (on_conflict_do_nothing/_update and
    excluded) on both backends: the one place that switches on the dialect for it."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database dialect {dialect!r}")


# Constraint names both services' models use, so migrations can name them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on both backends: timestamptz on PostgreSQL, naive
    UTC on SQLite (which keeps no zone, so it is added back). Naive values are
    refused: a naive datetime is a bug waiting to happen."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("refusing a naive datetime: pass a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
