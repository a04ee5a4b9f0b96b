"""The migration matches the models on both databases, the composition root
refuses an unmigrated shared database, and the real entry point serves and
stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import inspect, text

from services.budget.main import build_app, main
from services.budget.store.models import metadata
from services.common.db import create_db_engine, is_sqlite
from services.common.migrations import MigrationsPending, alembic_config, is_at_head, version_table
from tests.support.access import access
from tests.support.budget_server import budget_settings

ROOT = Path(__file__).resolve().parents[2]
BUDGET_TABLES = {
    "budget_users",
    "budget_windows",
    "budget_reservations",
    "budget_usage_records",
    "budget_system_limits",
    "budget_audit_log",
    "budget_usage_daily",
    "budget_rate_states",
    "budget_blocks",
    "budget_abuse_streaks",
    "budget_credits",
    "budget_system_spend",
    "budget_system_outcomes",
    "budget_system_totals",
    "budget_user_totals",
    "budget_alerts",
    "budget_alert_silences",
    "budget_webhook_deliveries",
    "budget_system_prompts",
    "budget_user_prompts",
    "budget_dish_first_generations",
}


def _budget_only(name, type_, parent_names) -> bool:  # type: ignore[no-untyped-def]
    return type_ != "table" or name in BUDGET_TABLES


def test_the_migration_creates_exactly_what_the_models_describe(database_url) -> None:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "version_table": version_table("budget"),
                    "include_name": _budget_only,
                },
            )
            assert compare_metadata(context, metadata) == []
        assert is_at_head("budget", engine)
    finally:
        engine.dispose()


def test_the_migration_downgrades_and_upgrades_again(database_url) -> None:
    engine = create_db_engine(database_url)
    try:
        config = alembic_config("budget", engine)
        command.downgrade(config, "base")
        assert BUDGET_TABLES.isdisjoint(inspect(engine).get_table_names())
        assert not is_at_head("budget", engine)
        command.upgrade(config, "head")
        assert set(inspect(engine).get_table_names()) >= BUDGET_TABLES
    finally:
        engine.dispose()


def test_a_shared_database_must_be_migrated_before_the_service_starts(
    database_url, authenticator, tmp_path
) -> None:
    engine = create_db_engine(database_url)
    try:
        command.downgrade(alembic_config("budget", engine), "base")
    finally:
        engine.dispose()
    if is_sqlite(database_url):
        # The embedded database migrates itself.
        app = build_app(budget_settings(database_url), access(authenticator))
        try:
            assert is_at_head("budget", app.engine)
        finally:
            app.stop(0)
    else:
        with pytest.raises(MigrationsPending, match="make migrate"):
            build_app(budget_settings(database_url), access(authenticator))


def test_main_refuses_bad_settings(monkeypatch, capsys) -> None:
    monkeypatch.setenv("RECIPEIMAGE_DEFAULT_TIER", "gold")
    assert main() == 2
    assert "RECIPEIMAGE_DEFAULT_TIER" in capsys.readouterr().err


def test_the_entry_point_serves_and_stops_on_sigterm(tmp_path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECIPEIMAGE_")}
    env.update(
        {
            "RECIPEIMAGE_BUDGET_ADDRESS": "127.0.0.1:0",
            "RECIPEIMAGE_BUDGET_DATABASE_URL": f"sqlite:///{tmp_path}/budget.db",
            "RECIPEIMAGE_BUDGET_METRICS_PORT": "0",
            "RECIPEIMAGE_JWT_SECRET": "x" * 40,
            "RECIPEIMAGE_SHUTDOWN_GRACE_SECONDS": "1",
            "RECIPEIMAGE_REAPER_INTERVAL_SECONDS": "0.1",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "services.budget.main"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        assert process.stderr is not None
        for line in process.stderr:
            entry = json.loads(line)
            if entry.get("message") == "serving":
                port = entry["port"]
                break
        assert port, "the server never said it was serving"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = health.Check(
                health_pb2.HealthCheckRequest(service="recipeimage.budget.v1.BudgetService"),
                timeout=5,
            )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_second_migration_keeps_and_rolls_up_what_the_first_stored(database_url) -> None:
    """A database that shipped with 0001 and holds data: 0002 keeps every row,
    rolls the existing records up, and creates the system limits row."""
    engine = create_db_engine(database_url)
    try:
        config = alembic_config("budget", engine)
        command.downgrade(config, "0001_budget_initial")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO budget_users (user_id, tier, created_at, updated_at) "
                    "VALUES ('u1', 'pro', :t, :t)"
                ),
                {"t": "2026-03-10 12:00:00"},
            )
            connection.execute(
                text(
                    "INSERT INTO budget_windows (scope, subject, kind, start_date, spent_micros, "
                    "reserved_micros) VALUES ('user', 'u1', 'day', '2026-03-10', 5, 7)"
                )
            )
            for number, (when, outcome, cost) in enumerate(
                [
                    ("2026-03-10 10:00:00", "refused", 0),
                    ("2026-03-10 23:59:59", "refused", 0),
                    ("2026-03-11 00:00:00", "cache_hit_exact", 0),
                ]
            ):
                connection.execute(
                    text(
                        "INSERT INTO budget_usage_records (request_id, user_id, recipe_id, prompt,"
                        " prompt_length, size, quality, model, provider, cost_micros, success,"
                        " error_message, fallback_used, generation_time_ms, cached, cache_hit,"
                        " outcome, cost_saved_micros, input_tokens, output_tokens, created_at)"
                        " VALUES (:id, 'u1', '', '', 0, '1024x1024', 'medium', 'm', 'p', :cost,"
                        " :success, '', false, 0, :cached, '', :outcome, 3, 0, 0, :t)"
                    ),
                    {
                        "id": f"r{number}",
                        "cost": cost,
                        "success": outcome != "refused",
                        "cached": outcome != "refused",
                        "outcome": outcome,
                        "t": when + ("+00" if not is_sqlite(database_url) else ""),
                    },
                )
        command.upgrade(config, "head")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT tier FROM budget_users")).scalar() == "pro"
            assert connection.execute(
                text("SELECT spent_micros, reserved_micros, overrun_micros FROM budget_windows")
            ).one() == (5, 7, 0)
            assert connection.execute(
                text("SELECT id, daily_limit_micros FROM budget_system_limits")
            ).one() == (1, None)
            rolled = connection.execute(
                text(
                    "SELECT day, outcome, generations, successful, cache_hits, cost_saved_micros"
                    " FROM budget_usage_daily ORDER BY day"
                )
            ).all()
        assert [(str(r[0]), *r[1:]) for r in rolled] == [
            ("2026-03-10", "refused", 2, 0, 0, 6),
            ("2026-03-11", "cache_hit_exact", 1, 1, 1, 3),
        ]
    finally:
        engine.dispose()
