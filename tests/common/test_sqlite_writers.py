"""SQLite's writer gate (services/common/db.py): however a transaction ends
(commit, rollback, an error, a connection closed in the middle), the next
writer gets in; and writers in several threads and processes on one file all
succeed, none with "database is locked"."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from services.common.db import create_db_engine

THREADS = 8
WRITES = 25


def counter_engine(path: Path) -> Engine:
    engine = create_db_engine(f"sqlite:///{path}", pool_size=THREADS)
    with engine.begin() as connection:
        connection.execute(
            text("CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, n INT)")
        )
        connection.execute(text("INSERT OR IGNORE INTO counter VALUES (1, 0)"))
    return engine


def count(engine: Engine) -> int:
    with engine.begin() as connection:
        return int(connection.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one())


def add_one(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE counter SET n = n + 1 WHERE id = 1"))


def write_from_threads(path: str) -> None:
    engine = create_db_engine(f"sqlite:///{path}", pool_size=THREADS)
    threads = [
        threading.Thread(target=lambda: [add_one(engine) for _ in range(WRITES)])
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()


def test_every_way_a_transaction_ends_lets_the_next_writer_in(tmp_path: Path) -> None:
    engine = counter_engine(tmp_path / "gate.db")
    try:
        with pytest.raises(RuntimeError), engine.begin() as connection:
            connection.execute(text("UPDATE counter SET n = n + 100"))
            raise RuntimeError("the use case failed")
        with engine.connect() as connection:
            connection.execute(text("UPDATE counter SET n = n + 100"))
            connection.rollback()
        with engine.connect() as connection:
            connection.execute(text("UPDATE counter SET n = n + 100"))
            connection.invalidate()  # its connection closed in the middle
        # Another thread writes at once: nothing above kept the gate.
        writer = threading.Thread(target=add_one, args=(engine,))
        writer.start()
        writer.join(timeout=5)
        assert not writer.is_alive()
        assert count(engine) == 1
    finally:
        engine.dispose()


def test_threads_of_two_processes_all_write(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    counter_engine(path).dispose()
    spawn = multiprocessing.get_context("spawn")
    writers = [spawn.Process(target=write_from_threads, args=(str(path),)) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [writer.exitcode for writer in writers] == [0, 0]
    engine = create_db_engine(f"sqlite:///{path}")
    try:
        assert count(engine) == 2 * THREADS * WRITES
    finally:
        engine.dispose()
