"""The budget service's one composition root: settings -> engine -> store ->
use cases -> servicer -> server, plus the reaper; and the reconcile command's
store. Nothing is built at import time, and nothing is built anywhere else.

recipeimage-budget runs main(); tests call build_app() with their own
settings and clock, or build_servicer() for a servicer without a server.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import grpc
from recipeimage.budget.v1 import budget_service_pb2_grpc
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.budget.adapters.webhook_http import UrllibSender
from services.budget.app.abuse import AbuseWatch, BlockCounter
from services.budget.app.admission import Admission, Gate, ShadowCounter
from services.budget.app.alert_evaluator import AlertEvaluator
from services.budget.app.alert_views import AlertSignal, AlertViews
from services.budget.app.alerts import AlertCounter, AlertRaiser
from services.budget.app.blocks import Blocks
from services.budget.app.credits import Credits
from services.budget.app.export import Export
from services.budget.app.held import HELD_GAUGES, HeldNow
from services.budget.app.ledger import Ledger
from services.budget.app.management import Management
from services.budget.app.management_tools import ManagementTools
from services.budget.app.near_limits import NearLimits
from services.budget.app.optimization import Optimization
from services.budget.app.paging import Pager
from services.budget.app.reaper import Reaper
from services.budget.app.reconciliation import Reconciler
from services.budget.app.reservations import Reservations
from services.budget.app.simulation import Simulation
from services.budget.app.stats import Stats
from services.budget.app.system_metrics import SystemMetricsReports
from services.budget.app.webhooks import (
    WEBHOOK_GAUGES,
    DeliveryCounter,
    WebhookDeliverer,
    WebhookOutbox,
)
from services.budget.domain.admission import AdmissionPolicy
from services.budget.domain.limits import LimitPolicy
from services.budget.domain.reconciliation import Reconciliation
from services.budget.servicer import SERVICE_NAME, BudgetServicer
from services.budget.settings import BudgetSettings
from services.budget.store.unit_of_work import BudgetStore
from services.common.clock import Clock, SystemClock
from services.common.config import ConfigError
from services.common.db import create_db_engine, create_sessions
from services.common.jsonlog import configure_logging
from services.common.migrations import MigrationsPending, prepare_database
from services.common.paging import PageTokens
from services.common.prices import configured_price_table
from services.common.processes import (
    WorkerSeat,
    WorkersPlan,
    serve_with_workers,
    stop_when_orphaned,
)
from services.common.rpc import Guard
from services.common.server import (
    RunningServer,
    ServerSettings,
    catch_stop_signals,
    serve_until_signalled,
    start_server,
)
from services.common.settings import Access, CommonSettings
from services.common.telemetry import Metrics

log = logging.getLogger("recipeimage.budget")


@dataclass
class BudgetApp:
    settings: BudgetSettings
    engine: Engine
    sessions: sessionmaker[Session]
    metrics: Metrics
    servicer: BudgetServicer
    reaper: Reaper
    evaluator: AlertEvaluator
    webhooks: WebhookDeliverer
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
        self.evaluator.stop()
        self.webhooks.stop()
        self.engine.dispose()


def limit_policy(settings: BudgetSettings) -> LimitPolicy:
    return LimitPolicy(
        settings.tiers,
        settings.default_tier,
        settings.system_daily_limit_micros,
        settings.system_monthly_limit_micros,
        settings.time_zone,
    )


def shadow_counter(metrics: Metrics) -> ShadowCounter:
    """Counts what rules in shadow mode would have refused, by rule."""
    return metrics.counter_by(
        "recipeimage_rate_shadow_refusals_total",
        "Calls a rate rule or cap in shadow mode would have refused (they went on).",
        "rule",
    )


def block_counter(metrics: Metrics) -> BlockCounter:
    """Counts automatic blocks, by trigger."""
    return metrics.counter_by(
        "recipeimage_abuse_blocks_total",
        "Users blocked automatically by an abuse trigger.",
        "trigger",
    )


def alert_counter(metrics: Metrics) -> AlertCounter:
    """Counts alerts raised, by rule and severity (rules are a fixed set)."""
    return metrics.counter_by_labels(
        "recipeimage_alerts_raised_total",
        "Budget alerts raised (each once per rule, subject and period), by rule and severity.",
        "rule",
        "severity",
    )


def delivery_counter(metrics: Metrics) -> DeliveryCounter:
    """Counts webhook attempts by destination name (configuration, never a
    URL) and result."""
    return metrics.counter_by_labels(
        "recipeimage_webhook_deliveries_total",
        "Alert webhook delivery attempts, by destination and result "
        "(delivered, rejected, timeout, unreachable).",
        "destination",
        "result",
    )


def webhook_deliverer(
    settings: BudgetSettings, store: BudgetStore, clock: Clock, metrics: Metrics
) -> WebhookDeliverer:
    """The alert webhooks' deliverer, its gauges read at each scrape."""
    webhooks = settings.webhooks
    deliverer = WebhookDeliverer(
        store,
        webhooks.destinations,
        UrllibSender(),
        clock,
        delivery_counter(metrics),
        timeout_seconds=webhooks.timeout_seconds,
        longest_retry=timedelta(seconds=webhooks.longest_retry_seconds),
        interval_seconds=webhooks.interval_seconds,
    )
    metrics.gauges_on_scrape(WEBHOOK_GAUGES, deliverer.backlog)
    return deliverer


@dataclass(frozen=True)
class AlertParts:
    """What raises alerts and what tells streams about them, shared by the
    use cases and the evaluator of one process."""

    raiser: AlertRaiser
    signal: AlertSignal


def alert_parts(settings: BudgetSettings, clock: Clock, metrics: Metrics) -> AlertParts:
    signal = AlertSignal()
    outbox = WebhookOutbox(settings.webhooks.destinations, clock)
    raiser = AlertRaiser(settings.alerts, clock, alert_counter(metrics), signal.ring, outbox.queue)
    return AlertParts(raiser, signal)


def watch(metrics: Metrics, engine: Engine, store: BudgetStore) -> None:
    """Gauges read at each scrape: the connection pool, and what is held now."""
    metrics.watch_pool(engine.pool)
    metrics.gauges_on_scrape(HELD_GAUGES, HeldNow(store).read)


def management_tools(
    settings: BudgetSettings,
    store: BudgetStore,
    clock: Clock,
    policy: LimitPolicy,
    pager: Pager,
    page_tokens: PageTokens,
) -> ManagementTools:
    """Credits, users near their limits, the ledger's export, the simulation."""
    return ManagementTools(
        Credits(store, clock, settings.time_zone),
        NearLimits(store, clock, policy, pager),
        Export(store, page_tokens),
        Simulation(store, policy),
    )


def build_servicer(
    settings: BudgetSettings,
    guard: Guard,
    store: BudgetStore,
    clock: Clock,
    page_tokens: PageTokens,
    alerts: AlertParts | None = None,
) -> BudgetServicer:
    """The use cases over one store, behind the gRPC edge."""
    alerts = alerts or alert_parts(settings, clock, guard.metrics)
    policy = limit_policy(settings)
    pager = Pager(page_tokens)
    gate = Gate(AdmissionPolicy(settings.admission), shadow_counter(guard.metrics))
    ttl = timedelta(seconds=settings.reservation_ttl_seconds)
    abuse = AbuseWatch(settings.abuse, block_counter(guard.metrics))
    return BudgetServicer(
        guard,
        Reservations(store, policy, clock, ttl, gate, abuse, alerts.raiser),
        Ledger(store, clock, abuse),
        Stats(store, clock, settings.time_zone, pager),
        Management(store, clock, policy, pager, alerts.raiser),
        Reconciler(store, settings.time_zone),
        Admission(store, gate, policy.tier_of, clock, abuse),
        Blocks(store, clock, pager),
        optimization=Optimization(store, clock, configured_price_table(settings.price_table)),
        tools=management_tools(settings, store, clock, policy, pager, page_tokens),
        system_metrics=SystemMetricsReports(store, clock, settings.time_zone, pager),
        alerts=AlertViews(
            store,
            settings.alerts,
            clock,
            pager,
            alerts.signal,
            settings.alert_watch_poll_seconds,
            settings.alert_max_watchers,
        ),
    )


def build_app(settings: BudgetSettings, access: Access, clock: Clock | None = None) -> BudgetApp:
    """Build and start the budget service: migrated database, server, reaper."""
    clock = clock or SystemClock()
    guard = Guard(access.authenticator, Metrics("budget"))
    engine = create_db_engine(settings.database_url, pool_size=settings.db_pool_size)
    try:
        prepare_database("budget", engine, settings.database_url)
        sessions = create_sessions(engine)
        store = BudgetStore(sessions)
        alerts = alert_parts(settings, clock, guard.metrics)
        servicer = build_servicer(settings, guard, store, clock, access.page_tokens, alerts)

        def register(server: grpc.Server) -> None:
            budget_service_pb2_grpc.add_BudgetServiceServicer_to_server(servicer, server)

        server = start_server(
            ServerSettings(
                address=settings.address,
                max_workers=settings.max_workers,
                max_concurrent_rpcs=settings.max_concurrent_rpcs,
                grace_seconds=access.grace_seconds,
                limits=settings.wire,
                tls=settings.tls,
                reuse_port=settings.reuse_port,
            ),
            register,
            [SERVICE_NAME],
        )
    except BaseException:
        engine.dispose()
        raise
    watch(guard.metrics, engine, store)
    reaper = Reaper(
        store,
        clock,
        settings.reaper_interval_seconds,
        guard.metrics.counter(
            "recipeimage_reservations_expired_total",
            "Reservations the reaper expired (not committed or released within the TTL).",
        ),
    )
    evaluator = AlertEvaluator(
        store,
        alerts.raiser,
        limit_policy(settings),
        clock,
        settings.alert_evaluation_interval_seconds,
    )
    webhooks = webhook_deliverer(settings, store, clock, guard.metrics)
    app = BudgetApp(
        settings, engine, sessions, guard.metrics, servicer, reaper, evaluator, webhooks, server
    )
    try:
        guard.metrics.serve(settings.metrics_port, settings.metrics_address)
        reaper.start()
        evaluator.start()
        webhooks.start()
    except BaseException:
        app.stop(0)
        raise
    return app


def reconcile(settings: BudgetSettings, since: datetime | None) -> Reconciliation:
    """One reconciliation run on the configured database (the reconcile command)."""
    engine = create_db_engine(settings.database_url, pool_size=1)
    try:
        store = BudgetStore(create_sessions(engine))
        return Reconciler(store, settings.time_zone).run(since)
    finally:
        engine.dispose()


def check_database(settings: BudgetSettings) -> None:
    """Migrate embedded SQLite, or check a shared database is migrated, once,
    before the workers start (so they never race to migrate)."""
    engine = create_db_engine(settings.database_url, pool_size=1)
    try:
        prepare_database("budget", engine, settings.database_url)
    finally:
        engine.dispose()


def main() -> int:
    try:
        common = CommonSettings.from_env(os.environ)
        settings = BudgetSettings.from_env(os.environ)
    except ConfigError as exc:
        print(f"recipeimage-budget: {exc}", file=sys.stderr)
        return 2
    configure_logging(common.log_level)
    stopping = catch_stop_signals(common.grace_seconds)
    try:
        if common.server_processes > 1:
            return serve_workers(settings, common, stopping)
        app = build_app(settings, Access.from_settings(common))
    except (ConfigError, MigrationsPending, OSError, ValueError) as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 2
    serve_until_signalled(app.server, common.grace_seconds, on_stop=app.close, stopping=stopping)
    return 0


def serve_workers(
    settings: BudgetSettings, common: CommonSettings, stopping: threading.Event
) -> int:
    """Check what every worker would refuse alike (the token secret, the
    database) once, then run common.server_processes workers on one port."""
    Access.from_settings(common)
    check_database(settings)
    plan = WorkersPlan(
        common.server_processes,
        settings.address,
        common.grace_seconds,
        settings.metrics_port,
        settings.metrics_address,
    )
    return serve_with_workers(plan, run_worker, stopping)


def run_worker(seat: WorkerSeat) -> None:
    """One of several server processes (spawned by main): its own app, pool
    and jobs on the port its parent reserved; its metrics on a loopback port
    the parent gathers from."""
    common = CommonSettings.from_env(os.environ)
    settings = BudgetSettings.from_env(os.environ)
    configure_logging(common.log_level)
    stopping = catch_stop_signals(common.grace_seconds)
    stop_when_orphaned(stopping)
    worker_settings = replace(settings, address=seat.address, metrics_port=0, reuse_port=True)
    try:
        app = build_app(worker_settings, Access.from_settings(common))
        metrics_port = app.metrics.serve_on_loopback() if settings.metrics_port else None
    except (ConfigError, MigrationsPending, OSError, ValueError) as exc:
        log.error("cannot start", extra={"error": str(exc), "worker": seat.index})
        sys.exit(2)
    seat.serving(metrics_port)
    serve_until_signalled(app.server, common.grace_seconds, on_stop=app.close, stopping=stopping)


if __name__ == "__main__":
    sys.exit(main())
