"""The budget service's one composition root: settings -> engine -> use cases
-> servicer -> server, plus the reaper. Nothing is built at import time.

recipeimage-budget runs main(); tests call build_app() with their own
settings, authenticator and clock.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import grpc
from recipeimage.budget.v1 import budget_service_pb2_grpc
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from services.budget.ledger import Ledger
from services.budget.limits import LimitPolicy
from services.budget.management import Management
from services.budget.reaper import Reaper
from services.budget.reconcile import Reconciler
from services.budget.reservations import Reservations
from services.budget.servicer import SERVICE_NAME, BudgetServicer
from services.budget.settings import BudgetSettings
from services.budget.stats import Stats
from services.common.auth import Authenticator
from services.common.clock import Clock, SystemClock
from services.common.config import ConfigError
from services.common.db import create_db_engine, create_sessions
from services.common.jsonlog import configure_logging
from services.common.migrations import MigrationsPending, prepare_database
from services.common.rpc import Guard
from services.common.server import (
    RunningServer,
    ServerSettings,
    serve_until_signalled,
    start_server,
)
from services.common.settings import CommonSettings
from services.common.telemetry import Metrics

log = logging.getLogger("recipeimage.budget")

DEFAULT_GRACE_SECONDS = 30.0


@dataclass
class BudgetApp:
    settings: BudgetSettings
    engine: Engine
    sessions: sessionmaker
    metrics: Metrics
    servicer: BudgetServicer
    reaper: Reaper
    server: RunningServer
    _closed: bool = field(default=False, repr=False)

    @property
    def port(self) -> int:
        return self.server.port

    def reap_expired(self, now: datetime | None = None) -> int:
        """Run the reaper once, now (default: the app's clock)."""
        return self.reaper.reap_expired(now)

    def stop(self, grace_seconds: float = 0.0) -> None:
        """Stop serving (in-flight calls get grace_seconds), then close."""
        self.server.stop(grace_seconds)
        self.close()

    def close(self) -> None:
        """Stop the reaper and release the database; the server must be stopped."""
        if self._closed:
            return
        self._closed = True
        self.reaper.stop()
        self.engine.dispose()


def build_servicer(
    settings: BudgetSettings,
    authenticator: Authenticator,
    sessions: sessionmaker,
    clock: Clock,
    metrics: Metrics,
) -> tuple[BudgetServicer, Reservations]:
    policy = LimitPolicy(
        settings.tiers,
        settings.default_tier,
        settings.system_daily_limit_micros,
        settings.system_monthly_limit_micros,
        settings.time_zone,
    )
    reservations = Reservations(
        sessions, policy, clock, timedelta(seconds=settings.reservation_ttl_seconds)
    )
    servicer = BudgetServicer(
        Guard(authenticator, metrics),
        reservations,
        Ledger(sessions, clock),
        Stats(sessions, clock, settings.time_zone),
        Management(sessions, clock, policy),
        Reconciler(sessions, settings.time_zone),
    )
    return servicer, reservations


def build_app(
    settings: BudgetSettings,
    common: CommonSettings | Authenticator,
    clock: Clock | None = None,
) -> BudgetApp:
    """Build and start the budget service: migrated database, server, reaper."""
    clock = clock or SystemClock()
    if isinstance(common, CommonSettings):
        authenticator = common.authenticator()
        grace = common.grace_seconds
    else:
        authenticator, grace = common, DEFAULT_GRACE_SECONDS
    engine = create_db_engine(settings.database_url, pool_size=settings.db_pool_size)
    try:
        prepare_database("budget", engine, settings.database_url)
        sessions = create_sessions(engine)
        metrics = Metrics("budget")
        servicer, reservations = build_servicer(settings, authenticator, sessions, clock, metrics)

        def register(server: grpc.Server) -> None:
            budget_service_pb2_grpc.add_BudgetServiceServicer_to_server(servicer, server)

        server = start_server(
            ServerSettings(
                address=settings.address,
                max_workers=settings.max_workers,
                max_concurrent_rpcs=settings.max_concurrent_rpcs,
                grace_seconds=grace,
            ),
            register,
            [SERVICE_NAME],
        )
    except BaseException:
        engine.dispose()
        raise
    reaper = Reaper(reservations, clock, settings.reaper_interval_seconds)
    app = BudgetApp(settings, engine, sessions, metrics, servicer, reaper, server)
    try:
        metrics.serve(settings.metrics_port, settings.metrics_address)
        reaper.start()
    except BaseException:
        app.stop(0)
        raise
    return app


def main() -> int:
    try:
        common = CommonSettings.from_env(os.environ)
        settings = BudgetSettings.from_env(os.environ)
    except ConfigError as exc:
        print(f"recipeimage-budget: {exc}", file=sys.stderr)
        return 2
    configure_logging(common.log_level)
    try:
        app = build_app(settings, common)
    except (ConfigError, MigrationsPending, OSError, ValueError) as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 2
    serve_until_signalled(app.server, common.grace_seconds, on_stop=app.close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
