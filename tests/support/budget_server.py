"""A real BudgetService in the test process, for the budget tests and for any
service's tests that talk to it.

    with running_budget(database_url, authenticator, clock=clock) as budget:
        budget.stub.GetLimits(request, metadata=tokens.user("u1"))

It binds 127.0.0.1:0 (the OS picks the port), serves no metrics and runs no
background reaper unless asked (reaper_interval_seconds=...): tests reap with
budget.app.reap_expired(now). Any BudgetSettings field can be overridden.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import grpc
from recipeimage.budget.v1 import budget_service_pb2_grpc

from services.budget.limits import DEFAULT_TIERS, Tier, TierLimits
from services.budget.main import BudgetApp, build_app
from services.budget.repository import Repository
from services.budget.settings import BudgetSettings
from services.common.auth import Authenticator
from services.common.clock import Clock


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


@dataclass
class RunningBudget:
    app: BudgetApp
    port: int
    target: str
    channel: grpc.Channel
    stub: budget_service_pb2_grpc.BudgetServiceStub

    def set_tier(self, user_id: str, tier: Tier | str) -> None:
        """Put a user on a tier (what the admin RPCs will do)."""
        with self.app.sessions.begin() as session:
            Repository(session).set_user_tier(user_id, Tier(tier).value, datetime.now(UTC))


def budget_settings(database_url: str, **overrides: object) -> BudgetSettings:
    """Test settings: defaults from an empty environment, loopback port 0, no
    metrics endpoint, no background reaper; then the overrides."""
    base = replace(
        BudgetSettings.from_env({}),
        address="127.0.0.1:0",
        database_url=database_url,
        metrics_port=0,
        reaper_interval_seconds=0.0,
        max_workers=32,
        db_pool_size=5,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@contextmanager
def running_budget(
    database_url: str,
    authenticator: Authenticator,
    clock: Clock | None = None,
    **setting_overrides: object,
) -> Iterator[RunningBudget]:
    app = build_app(budget_settings(database_url, **setting_overrides), authenticator, clock)
    target = f"127.0.0.1:{app.port}"
    channel = grpc.insecure_channel(target)
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
