"""A real BudgetService and a real ImageService in the test process, wired to
each other over loopback gRPC, sharing one test database.

    with running_pair(database_url, authenticator) as pair:
        reply = pair.image.GenerateImage(request, metadata=tokens.user("u1"))
        pair.budget.stub.GetLimits(...)

Both bind 127.0.0.1:0 and serve no metrics. `provider="openai"` with
`openai_base_url` points the real openai client at a fake (tests/support/
fake_openai.py). `**overrides` are ImageSettings fields; `budget_overrides`
are BudgetSettings fields (e.g. tiers=tiers(free=TierLimits(...))).

    with running_image(database_url, authenticator, pair.budget.target,
                       pair.store_dir) as replica:
        replica.image.GenerateImage(...)

starts one more ImageService on the same database, BudgetService and image
store: another replica.

`tls=certs.mutual` (tests/support/tls.py) makes both servers serve TLS (or
mutual TLS), ImageService reach BudgetService with the client's side of it,
and the harness's channels connect with it too; plaintext otherwise.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from recipeimage.image.v1 import image_service_pb2_grpc

from services.common.auth import Authenticator
from services.common.clock import Clock
from services.image.app.ports import Provider
from services.image.main import DEFAULT_GRACE_SECONDS, ImageApp, build_app
from services.image.settings import ImageSettings
from tests.support.access import access
from tests.support.budget_server import RunningBudget, running_budget
from tests.support.fake_openai import FakeOpenAI
from tests.support.tls import TlsPair

TEST_OPENAI_KEY = "sk-test-not-a-real-key"


@dataclass
class RunningPair:
    budget: RunningBudget
    app: ImageApp
    channel: grpc.Channel
    image: image_service_pb2_grpc.ImageServiceStub
    store_dir: Path

    @property
    def port(self) -> int:
        return self.app.port


def image_settings(database_url: str, store_dir: Path, **overrides: object) -> ImageSettings:
    """Test settings: defaults from an empty environment, loopback port 0, no
    metrics endpoint, a small pool; then the overrides."""
    base = replace(
        ImageSettings.from_env({}),
        address="127.0.0.1:0",
        database_url=database_url,
        metrics_port=0,
        max_workers=16,
        db_pool_size=5,
        store_dir=store_dir,
        provider="offline",
        # No background purge or settler unless a test asks for one: tests settle
        # with app.settle_pending(now).
        cache_purge_interval_seconds=0.0,
        settlement_interval_seconds=0.0,
        retention_interval_seconds=0.0,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class RunningImage:
    app: ImageApp
    channel: grpc.Channel
    image: image_service_pb2_grpc.ImageServiceStub


def _provider_choice(
    provider: str | Provider, openai_base_url: str | None
) -> tuple[dict[str, object], Provider | None]:
    if not isinstance(provider, str):
        return {}, provider
    choice: dict[str, object] = {"provider": provider}
    if provider == "openai":
        choice["openai_api_key"] = TEST_OPENAI_KEY
        choice["openai_base_url"] = openai_base_url or ""
    return choice, None


@contextmanager
def running_image(
    database_url: str,
    authenticator: Authenticator,
    budget_target: str,
    store_dir: Path,
    *,
    openai_base_url: str | None = None,
    provider: str | Provider = "offline",
    clock: Clock | None = None,
    tls: TlsPair | None = None,
    **overrides: object,
) -> Iterator[RunningImage]:
    """An ImageService (one replica) on an existing database and BudgetService."""
    choice, instance = _provider_choice(provider, openai_base_url)
    if tls is not None:  # explicit overrides win: a test may give a wrong client side
        overrides = {"tls": tls.server, "budget_tls": tls.client, **overrides}
    settings = image_settings(
        database_url, store_dir, budget_target=budget_target, **{**choice, **overrides}
    )
    app = build_app(
        settings, access(authenticator, DEFAULT_GRACE_SECONDS), clock=clock, provider=instance
    )
    target = f"127.0.0.1:{app.port}"
    channel = grpc.insecure_channel(target) if tls is None else tls.channel(target)
    try:
        yield RunningImage(app, channel, image_service_pb2_grpc.ImageServiceStub(channel))
    finally:
        channel.close()
        app.stop(0)


@contextmanager
def running_pair(
    database_url: str,
    authenticator: Authenticator,
    *,
    openai_base_url: str | None = None,
    provider: str | Provider = "offline",
    clock: Clock | None = None,
    budget_overrides: Mapping[str, object] | None = None,
    tls: TlsPair | None = None,
    **overrides: object,
) -> Iterator[RunningPair]:
    """`provider` is a RECIPEIMAGE_PROVIDER choice ("offline", "openai") or a
    Provider object to use as is."""
    with (
        running_budget(
            database_url, authenticator, clock, tls=tls, **dict(budget_overrides or {})
        ) as budget,
        tempfile.TemporaryDirectory(prefix="recipeimage-images-") as store,
        running_image(
            database_url,
            authenticator,
            budget.target,
            Path(store),
            openai_base_url=openai_base_url,
            provider=provider,
            clock=clock,
            tls=tls,
            **overrides,
        ) as image,
    ):
        yield RunningPair(
            budget=budget,
            app=image.app,
            channel=image.channel,
            image=image.image,
            store_dir=Path(store),
        )


def running_openai_pair(
    database_url: str, authenticator: Authenticator, fake: FakeOpenAI, **overrides: object
) -> AbstractContextManager[RunningPair]:
    """running_pair with the real openai client pointed at a fake OpenAI server,
    no retries unless asked (openai_max_retries=...)."""
    settings: dict[str, object] = {"openai_max_retries": 0, **overrides}
    return running_pair(
        database_url,
        authenticator,
        provider="openai",
        openai_base_url=fake.base_url,
        **settings,
    )
