"""Test databases: a migrated template per test run, copied for each test.

PostgreSQL: the run creates `ri_template_<id>` on the server named by
RECIPEIMAGE_TEST_POSTGRES_URL, migrates both services into it once, and gives
each test its own `CREATE DATABASE ... TEMPLATE` copy; all are dropped at the
end. SQLite: the same with a migrated file copied into the test's tmp_path.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from services.common.db import create_db_engine
from services.common.migrations import upgrade

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SERVICES = ("budget", "image")


def postgres_admin_url() -> str:
    return os.environ.get("RECIPEIMAGE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _conninfo(url: str, database: str | None = None) -> str:
    parsed = make_url(url)
    if database:
        parsed = parsed.set(database=database)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def migrate_all(url: str) -> None:
    engine = create_db_engine(url)
    try:
        for service in SERVICES:
            upgrade(service, engine)
    finally:
        engine.dispose()


class PostgresDatabases:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.run_id = uuid.uuid4().hex[:8]
        self.template = f"ri_template_{self.run_id}"
        self.created: list[str] = []

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(_conninfo(self.admin_url), autocommit=True, connect_timeout=5)

    def check_reachable(self) -> None:
        with self._admin():
            pass

    def url(self, database: str) -> str:
        return _conninfo(self.admin_url, database)

    def create_template(self) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        self.created.append(self.template)
        migrate_all(self.url(self.template))

    def create_empty(self) -> str:
        """A database with no tables at all, dropped at the end of the run."""
        name = f"ri_empty_{self.run_id}_{uuid.uuid4().hex[:8]}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return self.url(name)

    def create_copy(self) -> str:
        name = f"ri_test_{self.run_id}_{uuid.uuid4().hex[:8]}"
        with self._admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(self.template)
                )
            )
        self.created.append(name)
        return self.url(name)

    def drop(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(reversed(self.created)):
            self.drop(name)


class SqliteDatabases:
    def __init__(self, directory: Path) -> None:
        self.template = directory / "template.db"
        migrate_all(f"sqlite:///{self.template}")

    def create_copy(self, directory: Path) -> str:
        target = directory / f"test-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(self.template, target)
        return f"sqlite:///{target}"
