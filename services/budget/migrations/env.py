"""Alembic environment for the budget service's tables (alembic_version_budget)."""

from services.budget.store.models import metadata
from services.common.migrations import run_env

run_env(metadata)
