"""A real BudgetService in the test process, for the budget tests and for any
service's tests that talk to it.

    with running_budget(database_url, authenticator, clock=clock) as budget:
        budget.stub.GetLimits(request, metadata=tokens.user("u1"))

It binds 127.0.0.1:0 (the OS picks the port), serves no metrics and runs no
background reaper unless asked (reaper_interval_seconds=...): tests reap with
budget.app.reap_expired(now); nor the alert evaluator (tests call
budget.app.evaluator.evaluate(now)). `tls=certs.mutual` (tests/support/tls.py)
serves TLS or mutual TLS and connects the harness's channel with the client's
side of it; plaintext otherwise. Admission control's rate rules and caps are all
disabled unless asked (admission=admission(...)), so a test of money is not
refused for its pace; so are the abuse triggers (abuse=AbuseSettings(...)), so
a test of failures is not blocked for them. Any BudgetSettings field can be
overridden.

budget_processes() starts real BudgetService processes instead (the
recipeimage-budget entry point), configured through RECIPEIMAGE_ variables,
for tests of several replicas on one database.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import grpc
from recipeimage.budget.v1 import budget_service_pb2_grpc

from services.budget.domain.abuse import NO_ABUSE
from services.budget.domain.admission import (
    NO_ADMISSION,
    NO_TIER_RATES,
    AdmissionSettings,
    RuleName,
    SystemRates,
    TierRates,
)
from services.budget.domain.limits import DEFAULT_TIERS, Tier, TierLimits
from services.budget.main import BudgetApp, build_app
from services.budget.settings import BudgetSettings
from services.budget.store.limits import LimitsStore
from services.common.auth import Authenticator
from services.common.clock import Clock
from services.common.db import dialect_name
from tests.support.access import access
from tests.support.service_processes import clean_env, spawn_service, wait_until_serving
from tests.support.tls import TlsPair


class ManualClock:
    """A Clock that moves only when told to; safe to read from server threads."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("ManualClock needs timezone-aware instants")
        with self._lock:
            self._now = instant

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


def tiers(**overrides: TierLimits) -> dict[Tier, TierLimits]:
    """The default tiers with some replaced: tiers(free=TierLimits(100, 1000, 50))."""
    result = dict(DEFAULT_TIERS)
    for name, limits in overrides.items():
        result[Tier(name)] = limits
    return result


def admission(
    free: TierRates = NO_TIER_RATES,
    system: SystemRates | None = None,
    shadow: frozenset[RuleName] = frozenset(),
    **tier_rates: TierRates,
) -> AdmissionSettings:
    """Admission settings for a test: the free tier's rates (and others' by
    name), the system's (default: all disabled), the shadowed rules."""
    tiers = {tier: NO_TIER_RATES for tier in Tier} | {Tier.FREE: free}
    tiers |= {Tier(name): rates for name, rates in tier_rates.items()}
    return AdmissionSettings(tiers, system or SystemRates(0, 0, 0, 0), shadow)


# Every admission rule and abuse trigger disabled, for budget_processes' environment.
NO_ADMISSION_ENV = {
    **{
        f"RECIPEIMAGE_ABUSE_{threshold}": "0"
        for threshold in (
            "CONTENT_POLICY_STREAK",
            "INPUT_REJECTED_STREAK",
            "RATE_LIMIT_REFUSALS",
            "CACHE_BUSTING_PROMPTS",
        )
    },
    **{
        f"RECIPEIMAGE_RATE_{tier.name}": "requests_per_minute=0,request_burst=0,"
        "generations_per_hour=0,max_concurrent_generations=0"
        for tier in Tier
    },
    "RECIPEIMAGE_SYSTEM_REQUESTS_PER_SECOND": "0",
    "RECIPEIMAGE_SYSTEM_GENERATIONS_PER_MINUTE": "0",
    "RECIPEIMAGE_SYSTEM_MAX_CONCURRENT_GENERATIONS": "0",
}


@dataclass
class RunningBudget:
    app: BudgetApp
    port: int
    target: str
    channel: grpc.Channel
    stub: budget_service_pb2_grpc.BudgetServiceStub

    def set_tier(self, user_id: str, tier: Tier | str) -> None:
        """Put a user on a tier, keeping its overrides and caps (SetUserTier
        without its audit entry), straight in the store."""
        now = datetime.now(UTC)
        with self.app.sessions.begin() as session:
            limits = LimitsStore(session, dialect_name(session))
            settings = limits.lock_user(user_id, now)
            limits.store_user_settings(replace(settings, tier=Tier(tier)), now)


def budget_settings(database_url: str, **overrides: object) -> BudgetSettings:
    """Test settings: defaults from an empty environment, loopback port 0, no
    metrics endpoint, no background reaper; then the overrides."""
    base = replace(
        BudgetSettings.from_env({}),
        address="127.0.0.1:0",
        database_url=database_url,
        metrics_port=0,
        reaper_interval_seconds=0.0,
        alert_evaluation_interval_seconds=0.0,
        max_workers=32,
        db_pool_size=5,
        admission=NO_ADMISSION,
        abuse=NO_ABUSE,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@contextmanager
def running_budget(
    database_url: str,
    authenticator: Authenticator,
    clock: Clock | None = None,
    *,
    tls: TlsPair | None = None,
    **setting_overrides: object,
) -> Iterator[RunningBudget]:
    if tls is not None:
        setting_overrides["tls"] = tls.server
    settings = budget_settings(database_url, **setting_overrides)
    app = build_app(settings, access(authenticator), clock)
    target = f"127.0.0.1:{app.port}"
    channel = grpc.insecure_channel(target) if tls is None else tls.channel(target)
    try:
        yield RunningBudget(
            app=app,
            port=app.port,
            target=target,
            channel=channel,
            stub=budget_service_pb2_grpc.BudgetServiceStub(channel),
        )
    finally:
        channel.close()
        app.stop(0)


def budget_process_env(
    database_url: str, secret: str, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a BudgetService process on database_url, on an
    OS-picked port, admission's rules disabled; then env."""
    return {
        **clean_env(),
        "RECIPEIMAGE_BUDGET_ADDRESS": "127.0.0.1:0",
        "RECIPEIMAGE_BUDGET_DATABASE_URL": database_url,
        "RECIPEIMAGE_BUDGET_METRICS_PORT": "0",
        "RECIPEIMAGE_BUDGET_DB_POOL_SIZE": "10",
        "RECIPEIMAGE_JWT_SECRET": secret,
        "RECIPEIMAGE_SHUTDOWN_GRACE_SECONDS": "1",
        "RECIPEIMAGE_REAPER_INTERVAL_SECONDS": "0",
        "RECIPEIMAGE_LOG_LEVEL": "INFO",
        # One server process per replica unless env asks for more.
        "RECIPEIMAGE_SERVER_PROCESSES": "1",
        **NO_ADMISSION_ENV,
        **dict(env or {}),
    }


@dataclass
class BudgetProcess:
    process: subprocess.Popen[str]
    port: int
    channel: grpc.Channel
    stub: budget_service_pb2_grpc.BudgetServiceStub
    # Every JSON log line the process wrote, parsed, as it arrives.
    logs: list[dict] = field(default_factory=list)

    def messages(self, message: str) -> list[dict]:
        return [entry for entry in list(self.logs) if entry.get("message") == message]


@contextmanager
def budget_processes(
    count: int, database_url: str, secret: str, env: Mapping[str, str] | None = None
) -> Iterator[list[BudgetProcess]]:
    """`count` real BudgetService processes on one database, each on its own
    OS-picked port, started together; SIGTERM and waited for at the end.
    Admission's rules are disabled unless env sets them; each replica is one
    server process unless env sets RECIPEIMAGE_SERVER_PROCESSES."""
    base = budget_process_env(database_url, secret, env)
    with ExitStack() as stack:
        started = []
        for _ in range(count):
            process = spawn_service("budget", base)
            stack.callback(process.stop)
            started.append(process)
        running = []
        for process in started:
            wait_until_serving(process)
            channel = grpc.insecure_channel(process.target)
            stack.callback(channel.close)
            running.append(
                BudgetProcess(
                    process.process,
                    process.port,
                    channel,
                    budget_service_pb2_grpc.BudgetServiceStub(channel),
                    process.logs,
                )
            )
        yield running
