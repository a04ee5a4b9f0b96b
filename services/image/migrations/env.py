"""Alembic environment for ImageService: its own tables, its own version table."""

from services.common.migrations import run_env
from services.image.store.models import metadata

run_env(metadata)
