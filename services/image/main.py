"""ImageService's composition root: settings in, a running server out.

build_app wires settings to the price table, database, image store, provider,
BudgetService client, use cases and servicer, and starts the server; main()
does the same from the environment and serves until SIGTERM. Nothing else in
the package builds anything, and nothing is built at import time.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import grpc
from recipeimage.image.v1 import image_service_pb2_grpc as pb_grpc
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.common.auth import Authenticator
from services.common.clock import Clock, SystemClock
from services.common.config import ConfigError
from services.common.db import create_db_engine, create_sessions
from services.common.jsonlog import configure_logging
from services.common.migrations import prepare_database
from services.common.periodic import PeriodicJob
from services.common.prices import PriceError, PriceTable, load_price_table
from services.common.rpc import Guard
from services.common.server import (
    RunningServer,
    ServerSettings,
    serve_until_signalled,
    start_server,
)
from services.common.settings import CommonSettings
from services.common.telemetry import Metrics
from services.image.budget_client import BudgetClient, ServiceToken
from services.image.cache import CacheRepository
from services.image.generation import Images, StoredImage
from services.image.providers import Provider
from services.image.providers.offline import OfflineProvider
from services.image.providers.openai_provider import OpenAIProvider
from services.image.servicer import SERVICE_NAME, ImageServicer
from services.image.settings import ImageSettings
from services.image.settlement import Settlements
from services.image.storage import ImageStore, content_type_of
from services.image.validation import Defaults

log = logging.getLogger("recipeimage.image")

DEFAULT_GRACE_SECONDS = 5.0


@dataclass
class ImageApp:
    """A running ImageService and everything it holds open."""

    server: RunningServer
    images: Images
    settings: ImageSettings
    metrics: Metrics
    purger: PeriodicJob
    settler: PeriodicJob
    _engine: Engine = field(repr=False)
    _channel: grpc.Channel = field(repr=False)
    _provider: Provider = field(repr=False)
    _closed: bool = field(default=False, repr=False)

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, give in-flight ones `grace` seconds, then close everything."""
        self.server.stop(DEFAULT_GRACE_SECONDS if grace is None else grace)
        self.close()

    def settle_pending(self, now: datetime | None = None) -> int:
        """Retry every commit and release due at now that BudgetService has not
        acknowledged; how many it acknowledged."""
        return self.images.settlements.settle_pending(now)

    def close(self) -> None:
        """Release the BudgetService channel, the provider and the database; once."""
        if self._closed:
            return
        self._closed = True
        self.purger.stop()
        self.settler.stop()
        self._channel.close()
        self._provider.close()
        self._engine.dispose()


def build_app(
    settings: ImageSettings,
    common_or_authenticator: CommonSettings | Authenticator,
    clock: Clock | None = None,
    provider: Provider | None = None,
) -> ImageApp:
    """Build and start ImageService. Raises ConfigError for settings it cannot use."""
    if isinstance(common_or_authenticator, CommonSettings):
        authenticator = common_or_authenticator.authenticator()
        grace = common_or_authenticator.grace_seconds
    else:
        authenticator = common_or_authenticator
        grace = DEFAULT_GRACE_SECONDS
    clock = clock or SystemClock()
    try:
        prices = load_price_table(settings.price_table)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"RECIPEIMAGE_PRICE_TABLE: {exc}") from exc
    defaults = check_defaults(settings, prices, clock)
    fallback = read_fallback(settings)
    provider = provider or build_provider(settings)

    engine = create_db_engine(settings.database_url, pool_size=settings.db_pool_size)
    channel = grpc.insecure_channel(settings.budget_target)
    server: RunningServer | None = None
    purger: PeriodicJob | None = None
    settler: PeriodicJob | None = None
    try:
        prepare_database("image", engine, settings.database_url)
        metrics = Metrics("image")
        sessions = create_sessions(engine)
        store = ImageStore(settings.store_dir)
        budget = BudgetClient(
            channel,
            ServiceToken(authenticator),
            deadline_seconds=settings.budget_deadline_seconds,
        )
        settlements = Settlements(sessions, budget, clock)
        images = Images(
            sessions=sessions,
            store=store,
            budget=budget,
            settlements=settlements,
            provider=provider,
            prices=prices,
            defaults=defaults,
            cache_ttl=timedelta(days=settings.cache_ttl_days),
            clock=clock,
            similarity_threshold=settings.similarity_threshold,
            lease_ttl=timedelta(seconds=settings.generation_lease_seconds),
            single_flight_wait_seconds=settings.single_flight_wait_seconds,
            fallback=store_fallback(fallback, store, sessions, clock),
        )
        # Both are safe in every replica at once: purging deletes rows by id,
        # and a settlement row is claimed with one conditional UPDATE.
        purger = PeriodicJob(
            "image-cache-purger", settings.cache_purge_interval_seconds, images.purge_expired, log
        )
        settler = PeriodicJob(
            "image-settler", settings.settlement_interval_seconds, settlements.settle_pending, log
        )
        servicer = ImageServicer(images, Guard(authenticator, metrics))
        server = start_server(
            ServerSettings(
                address=settings.address,
                max_workers=settings.max_workers,
                max_concurrent_rpcs=settings.max_concurrent_rpcs,
                grace_seconds=grace,
            ),
            lambda grpc_server: pb_grpc.add_ImageServiceServicer_to_server(servicer, grpc_server),
            [SERVICE_NAME],
        )
        metrics.serve(settings.metrics_port, settings.metrics_address)
        purger.start()
        settler.start()
    except BaseException:
        if purger is not None:
            purger.stop()
        if settler is not None:
            settler.stop()
        if server is not None:
            server.stop(0)
        channel.close()
        provider.close()
        engine.dispose()
        raise
    log.info(
        "image service ready",
        extra={
            "port": server.port,
            "provider": provider.name,
            "default_model": defaults.model,
            "budget_target": settings.budget_target,
            "price_table": prices.version,
        },
    )
    return ImageApp(server, images, settings, metrics, purger, settler, engine, channel, provider)


def check_defaults(settings: ImageSettings, prices: PriceTable, clock: Clock) -> Defaults:
    """The configured defaults, refused at start when the price table cannot serve them."""
    try:
        price = prices.require_available(settings.default_model, on=clock.now().date())
        price.per_image_micros(settings.default_quality, settings.default_size)
    except PriceError as exc:
        raise ConfigError(
            "RECIPEIMAGE_DEFAULT_MODEL / RECIPEIMAGE_DEFAULT_SIZE / RECIPEIMAGE_DEFAULT_QUALITY "
            f"({settings.default_model}, {settings.default_size}, {settings.default_quality}): "
            f"{exc}"
        ) from exc
    return Defaults(settings.default_model, settings.default_size, settings.default_quality)


def read_fallback(settings: ImageSettings) -> tuple[bytes, str] | None:
    """The configured fallback image's bytes and content type, checked at start."""
    path = settings.fallback_image
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"RECIPEIMAGE_FALLBACK_IMAGE: cannot read {path}: {exc}") from exc
    content_type = content_type_of(data)
    if content_type is None:
        raise ConfigError(f"RECIPEIMAGE_FALLBACK_IMAGE: {path} is not a PNG, JPEG or WebP image")
    return data, content_type


def store_fallback(
    fallback: tuple[bytes, str] | None,
    store: ImageStore,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> StoredImage | None:
    """The fallback image, stored like any other so GetImage serves it."""
    if fallback is None:
        return None
    data, content_type = fallback
    image_id = store.put(data, content_type)
    with sessions.begin() as session:
        repo = CacheRepository(session)
        repo.add_image(image_id, content_type, len(data), clock.now())
        row = repo.image(image_id)
        assert row is not None
        return StoredImage.of(row)


def build_provider(settings: ImageSettings) -> Provider:
    choice = settings.resolved_provider()
    if choice == "offline":
        return OfflineProvider()
    if not settings.openai_api_key:
        raise ConfigError("RECIPEIMAGE_PROVIDER=openai needs OPENAI_API_KEY")
    return OpenAIProvider(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url or None,
        timeout_seconds=settings.openai_timeout_seconds,
        max_retries=settings.openai_max_retries,
    )


def main() -> int:
    common = CommonSettings.from_env(os.environ)
    configure_logging(common.log_level)
    try:
        settings = ImageSettings.from_env(os.environ)
        app = build_app(settings, common)
    except (ConfigError, OSError) as exc:
        log.error("cannot start the image service", extra={"error": str(exc)})
        return 2
    serve_until_signalled(app.server, common.grace_seconds, on_stop=app.close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
