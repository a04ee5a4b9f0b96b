"""The composition root and the migrations: what build_app accepts and refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from services.common.config import ConfigError
from services.common.db import create_db_engine, is_sqlite
from services.common.migrations import alembic_config, is_at_head
from services.image import main as image_main
from services.image.main import build_app
from services.image.store.models import metadata
from tests.support.access import access
from tests.support.image_server import image_settings

IMAGE_TABLES = {"images", "cache_entries", "cache_totals", "generation_leases"}


def test_the_migrations_create_exactly_the_models(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diffs = [d for d in compare_metadata(context, metadata) if _about_image_tables(d)]
        assert diffs == []
        assert is_at_head("image", engine)
    finally:
        engine.dispose()


def _about_image_tables(diff) -> bool:  # type: ignore[no-untyped-def]
    # compare_metadata also reports BudgetService's tables, which are not ours.
    items = diff if isinstance(diff, list) else [diff]
    for item in items:
        for part in item[1:]:
            table = getattr(part, "table", None)
            name = getattr(table, "name", None) or getattr(part, "name", None) or part
            if name in IMAGE_TABLES:
                return True
    return False


def test_downgrade_and_upgrade_round_trip(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        command.downgrade(alembic_config("image", engine), "base")
        assert IMAGE_TABLES.isdisjoint(inspect(engine).get_table_names())
        assert not is_at_head("image", engine)
        command.upgrade(alembic_config("image", engine), "head")
        assert set(inspect(engine).get_table_names()) >= IMAGE_TABLES
    finally:
        engine.dispose()


def test_sqlite_migrates_itself_and_a_server_database_must_be_migrated_first(
    database_url: str, authenticator, tmp_path: Path
) -> None:
    engine = create_db_engine(database_url)
    command.downgrade(alembic_config("image", engine), "base")
    engine.dispose()
    settings = image_settings(database_url, tmp_path)

    if is_sqlite(database_url):
        app = build_app(settings, access(authenticator))
        app.stop(0)
        engine = create_db_engine(database_url)
        assert is_at_head("image", engine)
        engine.dispose()
    else:
        with pytest.raises(ConfigError, match="make migrate"):
            build_app(settings, access(authenticator))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"default_model": "dall-e-3"}, "RECIPEIMAGE_DEFAULT_MODEL"),
        ({"default_model": "gpt-image-9"}, "unknown image model"),
        ({"default_size": "640x480"}, "no size '640x480'"),
        ({"provider": "openai", "openai_api_key": ""}, "OPENAI_API_KEY"),
        ({"price_table": Path("/nonexistent/prices.json")}, "RECIPEIMAGE_PRICE_TABLE"),
        ({"fallback_image": Path("/nonexistent/fallback.png")}, "RECIPEIMAGE_FALLBACK_IMAGE"),
    ],
)
def test_unusable_settings_are_refused_at_start(
    tmp_path: Path, authenticator, overrides: dict, message: str
) -> None:
    settings = image_settings(f"sqlite:///{tmp_path}/never-created.db", tmp_path, **overrides)
    with pytest.raises(ConfigError, match=message):
        build_app(settings, access(authenticator))
    assert not (tmp_path / "never-created.db").exists()


def test_main_reports_a_bad_setting_and_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_main, "configure_logging", lambda level: None)
    monkeypatch.setenv("RECIPEIMAGE_PROVIDER", "dalle")
    assert image_main.main() == 2


def test_a_fallback_image_that_is_not_an_image_is_refused(
    database_url: str, authenticator, tmp_path: Path
) -> None:
    not_an_image = tmp_path / "fallback.png"
    not_an_image.write_text("hello")
    settings = image_settings(database_url, tmp_path, fallback_image=not_an_image)
    with pytest.raises(ConfigError, match="RECIPEIMAGE_FALLBACK_IMAGE"):
        build_app(settings, access(authenticator))


def test_the_purge_job_starts_with_the_app_and_stops_with_it(
    database_url: str, authenticator, tmp_path: Path
) -> None:
    app = build_app(
        image_settings(database_url, tmp_path, cache_purge_interval_seconds=60),
        access(authenticator),
    )
    assert app.purger.running
    app.stop(0)
    assert not app.purger.running
    idle = build_app(image_settings(database_url, tmp_path), access(authenticator))
    assert not idle.purger.running
    idle.stop(0)
