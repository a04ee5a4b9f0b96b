"""The console commands: recipeimage-token and recipeimage-migrate."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from services.common.auth import Authenticator, Role
from services.common.db import create_db_engine
from services.common.tokens import main as token_main
from services.migrate import main as migrate_main
from tests.conftest import TEST_SECRET


def test_token_command_mints_a_token_the_services_accept(monkeypatch, capsys) -> None:
    monkeypatch.setenv("RECIPEIMAGE_JWT_SECRET", TEST_SECRET)
    assert token_main(["admin", "ops-alice", "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip()
    principal = Authenticator(TEST_SECRET).authenticate([("authorization", f"Bearer {token}")])
    assert (principal.role, principal.subject) == (Role.ADMIN, "ops-alice")


def test_token_command_explains_a_missing_secret(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delenv("RECIPEIMAGE_JWT_SECRET", raising=False)
    monkeypatch.setenv("RECIPEIMAGE_JWT_SECRET_FILE", str(tmp_path / "absent"))
    assert token_main(["user", "42"]) == 2
    assert "RECIPEIMAGE_JWT_SECRET" in capsys.readouterr().err


@pytest.mark.postgres
def test_migrate_command_brings_empty_databases_to_the_latest_schema(
    monkeypatch, postgres_databases, capsys
) -> None:
    budget_db = postgres_databases.create_empty()
    image_db = postgres_databases.create_empty()
    monkeypatch.setenv("RECIPEIMAGE_BUDGET_DATABASE_URL", budget_db)
    monkeypatch.setenv("RECIPEIMAGE_IMAGE_DATABASE_URL", image_db)
    assert migrate_main(["all"]) == 0
    assert "budget: migrated to head" in capsys.readouterr().out
    for url, table in [(budget_db, "budget_reservations"), (image_db, "cache_entries")]:
        engine = create_db_engine(url)
        try:
            assert table in inspect(engine).get_table_names()
        finally:
            engine.dispose()
    # Running it again changes nothing and succeeds.
    assert migrate_main(["budget"]) == 0
