"""Alembic, driven from code: each service has its own migrations folder and
its own version table, so both can share one PostgreSQL database without
touching each other's tables."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData
from sqlalchemy.engine import make_url

from services.common.config import ConfigError
from services.common.db import is_sqlite

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


class MigrationsPending(ConfigError):
    """A shared database is not at a service's latest migration."""


def prepare_database(service: str, engine: Engine, url: str) -> None:
    """Embedded SQLite migrates itself at start; a shared server database must
    be migrated first (`make migrate`), so replicas never race to migrate it."""
    if is_sqlite(url):
        upgrade(service, engine)
        return
    if not is_at_head(service, engine):
        where = make_url(url).render_as_string(hide_password=True)
        raise MigrationsPending(
            f"the {service} database {where} is not at the latest migration; "
            f"run `make migrate` (recipeimage-migrate {service}) first"
        )


def run_env(target_metadata: MetaData) -> None:
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
