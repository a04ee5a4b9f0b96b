"""Pooled PostgreSQL connections the server has closed are replaced at
checkout without a pre-ping round trip: the next transaction just works."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from services.common.db import create_db_engine

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("server-side connection ends are a PostgreSQL matter")
    return database_url


def _terminate_all(url: str) -> int:
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (parsed.database,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _wait_until_gone(url: str) -> None:
    """Until the terminated backends have ended (pg_terminate_backend only signals)."""
    deadline = time.monotonic() + 10
    while _terminate_all(url) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_terminated_pooled_connection_is_replaced_without_a_failed_call(
    postgres_url: str,
) -> None:
    engine = create_db_engine(postgres_url, pool_size=2)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        with engine.connect() as connection:
            before = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        assert _terminate_all(postgres_url) >= 1
        _wait_until_gone(postgres_url)
        with engine.connect() as connection:
            after = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        assert after != before
        assert statements == ["SELECT pg_backend_pid()"] * 2  # no ping was sent
    finally:
        engine.dispose()


def test_a_healthy_checkout_sends_nothing_before_the_first_statement(postgres_url: str) -> None:
    engine = create_db_engine(postgres_url, pool_size=1)
    admin = make_url(postgres_url).set(drivername="postgresql", database="postgres")
    try:
        with engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as connection:
            assert connection.connection.dbapi_connection  # checked out: a ping would run now
            with psycopg.connect(
                admin.render_as_string(hide_password=False), autocommit=True
            ) as observer:
                last = observer.execute(
                    "SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar() == pid
        # The last thing the backend ran is the pool's reset on return, not a ping.
        assert last == ("ROLLBACK",)
    finally:
        engine.dispose()
