"""Alembic, driven from code: each service has its own migrations folder and
its own version table, so both can share one PostgreSQL database without
touching each other's tables."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

SERVICES_DIR = Path(__file__).resolve().parent.parent


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def alembic_config(service: str, engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    config.set_main_option("version_table", version_table(service))
    config.attributes["engine"] = engine
    return config


def upgrade(service: str, engine: Engine) -> None:
    command.upgrade(alembic_config(service, engine), "head")


def is_at_head(service: str, engine: Engine) -> bool:
    script = ScriptDirectory.from_config(alembic_config(service, engine))
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": version_table(service)}
        )
        return set(context.get_current_heads()) == set(script.get_heads())


def run_env(target_metadata) -> None:  # type: ignore[no-untyped-def]
    """The body of each service's migrations/env.py."""
    from alembic import context

    config = context.config
    engine: Engine = config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=config.get_main_option("version_table"),
            render_as_batch=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
