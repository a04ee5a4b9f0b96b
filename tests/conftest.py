"""Fixtures shared by every test: databases on both backends, tokens."""

from __future__ import annotations

import os

import pytest

from services.common.auth import Authenticator, Role
from tests.support.databases import PostgresDatabases, SqliteDatabases, postgres_admin_url

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def sqlite_databases(tmp_path_factory: pytest.TempPathFactory) -> SqliteDatabases:
    return SqliteDatabases(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_databases():
    databases = PostgresDatabases(postgres_admin_url())
    try:
        databases.check_reachable()
    except Exception as exc:  # any connection failure means: no server here
        message = (
            f"PostgreSQL is not reachable at {postgres_admin_url()} ({exc}); start it or set "
            "RECIPEIMAGE_TEST_POSTGRES_URL to a server where this user may create databases"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    databases.create_template()
    yield databases
    databases.drop_all()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A freshly migrated database holding both services' tables, on each backend."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_databases").create_copy(tmp_path)
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    url = databases.create_copy()
    yield url
    databases.drop(url.rsplit("/", 1)[1])


@pytest.fixture(scope="session")
def authenticator() -> Authenticator:
    return Authenticator(TEST_SECRET)


class Tokens:
    """Bearer metadata for each kind of caller."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    def metadata(self, role: Role, subject: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._authenticator.mint(role, subject)}"),)

    def user(self, user_id: str) -> tuple[tuple[str, str], ...]:
        return self.metadata(Role.USER, user_id)

    def service(self, name: str = "recipe-backend") -> tuple[tuple[str, str], ...]:
        return self.metadata(Role.SERVICE, name)

    def admin(self, name: str = "ops") -> tuple[tuple[str, str], ...]:
        return self.metadata(Role.ADMIN, name)


@pytest.fixture(scope="session")
def tokens(authenticator: Authenticator) -> Tokens:
    return Tokens(authenticator)
