"""ImageService's composition root: settings in, a running server out.

build_app wires settings to the price table, database, image store, provider,
BudgetService client, page tokens, use cases (build_use_cases), background jobs
and servicer, and starts the server; main() does the same from the environment
and serves until SIGTERM. Nothing else in the package builds anything, and
nothing is built at import time.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import grpc
from recipeimage.image.v1 import image_service_pb2_grpc as pb_grpc
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock, SystemClock
from services.common.config import ConfigError
from services.common.db import create_db_engine, create_sessions
from services.common.jsonlog import configure_logging
from services.common.migrations import prepare_database
from services.common.paging import PageTokens
from services.common.periodic import PeriodicJob
from services.common.prices import PriceError, PriceTable, configured_price_table
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
from services.common.transport import open_channel
from services.image.adapters.budget_client import BudgetClient, ServiceToken
from services.image.adapters.dish_model import OpenAIDishModel
from services.image.adapters.image_store import ImageStore, content_type_of
from services.image.adapters.providers.offline import OfflineProvider
from services.image.adapters.providers.openai_provider import OpenAIProvider
from services.image.adapters.s3_image_store import S3ImageStore, S3Location
from services.image.app.cache_admin import CacheAdmin
from services.image.app.cache_lookup import CacheLookup
from services.image.app.dish_recognition import DishModel, DishRecognition
from services.image.app.generate import GenerateImage
from services.image.app.generation_slots import GenerationSlots, generation_slots
from services.image.app.image_keeper import ImageKeeper
from services.image.app.in_flight import InFlight
from services.image.app.measured_provider import MeasuredProvider
from services.image.app.meters import GenerationMeters, ProviderMeters
from services.image.app.ports import Budget, ImageStorage, Provider
from services.image.app.queries import ImageQueries
from services.image.app.quote import QuoteImage
from services.image.app.retention import ImageRetention
from services.image.app.settler import BACKLOG_GAUGES, Settler
from services.image.app.single_flight import SingleFlight
from services.image.app.use_cases import ImageUseCases
from services.image.domain.command import Defaults
from services.image.servicer import SERVICE_NAME, ImageServicer
from services.image.settings import ImageSettings

log = logging.getLogger("recipeimage.image")

DEFAULT_GRACE_SECONDS = 5.0


@dataclass
class ImageApp:
    """A running ImageService and everything it holds open."""

    server: RunningServer
    use_cases: ImageUseCases
    sessions: sessionmaker[Session]
    settings: ImageSettings
    metrics: Metrics
    purger: PeriodicJob
    settler: PeriodicJob
    retention: PeriodicJob
    _engine: Engine = field(repr=False)
    _channel: grpc.Channel = field(repr=False)
    _provider: Provider = field(repr=False)
    _dish_model: DishModel | None = field(default=None, repr=False)
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
        return self.use_cases.settler.settle_pending(now)

    def flush(self, timeout: float | None = None) -> bool:
        """Write the cache hits' counts gathered so far, and wait until every
        hit's usage record answered so far has been sent to BudgetService (or
        left to the settler); False on timeout."""
        return self.use_cases.flush(timeout)

    def close(self) -> None:
        """Release the BudgetService channel, the provider and the database; once.
        Paid generations still running (their callers may be gone) finish and
        commit first: closing the provider under one would record a paid image
        as a failed attempt at cost 0."""
        if self._closed:
            return
        self._closed = True
        drain = self.settings.generation_drain_seconds
        if not self.use_cases.in_flight.wait_until_idle(drain):
            log.error(
                "generations still running after the drain period; closing under them",
                extra={"in_flight": self.use_cases.in_flight.count, "drain_seconds": drain},
            )
        self.purger.stop()
        self.settler.stop()
        self.retention.stop()
        # The hits' records answered so far are sent before the channel closes
        # (what is left stays in the outbox for the settler of any replica).
        self.use_cases.settler.records.stop(drain)
        self.use_cases.generate_image.cache.hits.stop()
        self._channel.close()
        self._provider.close()
        if self._dish_model is not None:
            self._dish_model.close()
        self._engine.dispose()


def build_app(
    settings: ImageSettings,
    access: Access,
    clock: Clock | None = None,
    provider: Provider | None = None,
) -> ImageApp:
    """Build and start ImageService. Raises ConfigError for settings it cannot use."""
    authenticator = access.authenticator
    clock = clock or SystemClock()
    prices = read_price_table(settings)
    defaults = check_defaults(settings, prices, clock)
    fallback = read_fallback(settings)
    provider = provider or build_provider(settings)
    dish_model = build_dish_model(settings, prices)
    with ExitStack() as on_failure:
        on_failure.callback(provider.close)
        if dish_model is not None:
            on_failure.callback(dish_model.close)
        engine = create_db_engine(settings.database_url, pool_size=settings.db_pool_size)
        on_failure.callback(engine.dispose)
        channel = open_channel(settings.budget_target, settings.budget_tls, settings.wire)
        on_failure.callback(channel.close)
        prepare_database("image", engine, settings.database_url)
        metrics = Metrics("image")
        metrics.watch_pool(engine.pool)
        sessions = create_sessions(engine)
        use_cases = build_use_cases(
            settings,
            sessions=sessions,
            files=build_image_store(settings),
            budget=BudgetClient(
                channel,
                ServiceToken(authenticator),
                deadline_seconds=settings.budget_deadline_seconds,
            ),
            provider=MeasuredProvider(provider, provider_meters(metrics)),
            prices=prices,
            defaults=defaults,
            page_tokens=access.page_tokens,
            end_user_salt=access.end_user_salt,
            clock=clock,
            fallback=fallback,
            meters=generation_meters(metrics),
            dish_model=dish_model,
        )
        metrics.gauges_on_scrape(BACKLOG_GAUGES, use_cases.settler.backlog)
        purger, settler, retention = build_jobs(settings, use_cases)
        on_failure.callback(settler.stop)
        on_failure.callback(purger.stop)
        on_failure.callback(retention.stop)
        server = start_image_server(
            settings, access.grace_seconds, ImageServicer(use_cases, Guard(authenticator, metrics))
        )
        on_failure.callback(server.stop, 0)
        metrics.serve(settings.metrics_port, settings.metrics_address)
        purger.start()
        settler.start()
        retention.start()
        on_failure.pop_all()
    app = ImageApp(
        server,
        use_cases,
        sessions,
        settings,
        metrics,
        purger,
        settler,
        retention,
        engine,
        channel,
        provider,
        dish_model,
    )
    log.info("image service ready", extra=_ready_facts(app, provider, defaults, prices))
    return app


def _ready_facts(
    app: ImageApp, provider: Provider, defaults: Defaults, prices: PriceTable
) -> dict[str, object]:
    return {
        "port": app.port,
        "provider": provider.name,
        "default_model": defaults.model,
        "budget_target": app.settings.budget_target,
        "budget_tls": "off" if app.settings.budget_tls is None else "on",
        "price_table": prices.version,
    }


def generation_meters(metrics: Metrics) -> GenerationMeters:
    """GenerateImage's cache and single-flight figures, as Prometheus metrics."""
    return GenerationMeters(
        cache_hit=metrics.counter_by(
            "recipeimage_image_cache_hits_total",
            "GenerateImage calls served from the cache, by kind (exact, similar).",
            "kind",
        ),
        cache_miss=metrics.counter(
            "recipeimage_image_cache_misses_total",
            "GenerateImage calls the cache had no image for.",
        ),
        cache_lookup_seconds=metrics.seconds_histogram(
            "recipeimage_image_cache_lookup_seconds",
            "Time of one cache lookup (exact, then similar when asked), in seconds.",
        ),
        single_flight_wait=metrics.counter_by(
            "recipeimage_image_single_flight_waits_total",
            "Misses that waited for an identical generation in progress, by outcome "
            "(served, claimed, timed_out).",
            "outcome",
        ),
        single_flight_wait_seconds=metrics.seconds_histogram(
            "recipeimage_image_single_flight_wait_seconds",
            "How long a miss waited for an identical generation, in seconds.",
        ),
    )


def provider_meters(metrics: Metrics) -> ProviderMeters:
    """The image provider's latency and failures, as Prometheus metrics."""
    return ProviderMeters(
        seconds=metrics.seconds_histogram(
            "recipeimage_image_provider_seconds",
            "Time of one generation at the provider (its retries included), in seconds.",
        ),
        error=metrics.counter_by(
            "recipeimage_image_provider_errors_total",
            "Generations the provider failed, by reason (PROVIDER_TIMEOUT, "
            "CONTENT_POLICY_VIOLATION, PROVIDER_RATE_LIMITED, ...).",
            "reason",
        ),
    )


def build_jobs(
    settings: ImageSettings, use_cases: ImageUseCases
) -> tuple[PeriodicJob, PeriodicJob, PeriodicJob]:
    """The cache purger, the settler and image retention, not started. All are
    safe in every replica at once: purging deletes rows by id, a settlement row
    is claimed with one conditional UPDATE, and retention claims an image row
    with FOR UPDATE SKIP LOCKED and deletes it only when nothing refers to it
    (store/retention.py)."""
    purger = PeriodicJob(
        "image-cache-purger",
        settings.cache_purge_interval_seconds,
        use_cases.cache_admin.purge_expired,
        log,
    )
    settler = PeriodicJob(
        "image-settler",
        settings.settlement_interval_seconds,
        use_cases.settler.settle_pending,
        log,
    )
    retention = PeriodicJob(
        "image-retention",
        settings.retention_interval_seconds,
        use_cases.retention.run,
        log,
    )
    return purger, settler, retention


def start_image_server(
    settings: ImageSettings, grace_seconds: float, servicer: ImageServicer
) -> RunningServer:
    return start_server(
        ServerSettings(
            address=settings.address,
            max_workers=settings.max_workers,
            max_concurrent_rpcs=settings.max_concurrent_rpcs,
            grace_seconds=grace_seconds,
            limits=settings.wire,
            tls=settings.tls,
            reuse_port=settings.reuse_port,
        ),
        lambda grpc_server: pb_grpc.add_ImageServiceServicer_to_server(servicer, grpc_server),
        [SERVICE_NAME],
    )


def build_use_cases(
    settings: ImageSettings,
    *,
    sessions: sessionmaker[Session],
    files: ImageStorage,
    budget: Budget,
    provider: Provider,
    prices: PriceTable,
    defaults: Defaults,
    page_tokens: PageTokens,
    end_user_salt: bytes,
    clock: Clock,
    fallback: tuple[bytes, str] | None = None,
    meters: GenerationMeters | None = None,
    dish_model: DishModel | None = None,
) -> ImageUseCases:
    """The use cases and their collaborators, wired. Stores the fallback image
    (its bytes and content type), when there is one, so GetImage serves it."""
    settler = Settler(sessions, budget, clock)
    cache = CacheLookup(sessions, clock)
    keeper = ImageKeeper(
        sessions,
        files,
        settler,
        clock,
        cache_ttl=timedelta(days=settings.cache_ttl_days),
        flush_hits=cache.flush_hits,
    )
    in_flight = InFlight()
    slots = GenerationSlots(
        generation_slots(settings.max_concurrent_generations, settings.max_workers)
    )
    generate_image = GenerateImage(
        prices=prices,
        defaults=defaults,
        clock=clock,
        budget=budget,
        provider=provider,
        cache=cache,
        single_flight=SingleFlight(
            sessions,
            cache,
            clock,
            lease_ttl=timedelta(seconds=settings.generation_lease_seconds),
            wait_seconds=settings.single_flight_wait_seconds,
            meters=meters,
        ),
        keeper=keeper,
        settler=settler,
        similarity_threshold=settings.similarity_threshold,
        fallback=keeper.store_image(*fallback, pinned=True) if fallback is not None else None,
        in_flight=in_flight,
        slots=slots,
        end_user_salt=end_user_salt,
        meters=meters,
        dish_recognition=(
            DishRecognition(
                model=dish_model,
                price=prices.text_model(dish_model.model),
                sessions=sessions,
                budget=budget,
                clock=clock,
            )
            if dish_model is not None
            else None
        ),
    )
    return ImageUseCases(
        in_flight=in_flight,
        generate_image=generate_image,
        quote_image=QuoteImage(generate_image),
        queries=ImageQueries(
            sessions,
            files,
            page_tokens,
            clock,
            max_message_bytes=settings.wire.max_send_message_bytes,
            flush_hits=cache.flush_hits,
        ),
        cache_admin=CacheAdmin(sessions, clock, flush_hits=cache.flush_hits),
        settler=settler,
        retention=ImageRetention(
            sessions,
            files,
            clock,
            grace=timedelta(seconds=settings.retention_grace_seconds),
        ),
    )


def build_image_store(settings: ImageSettings) -> ImageStorage:
    """The local directory, or the S3-compatible bucket (RECIPEIMAGE_IMAGE_STORE=s3)."""
    if settings.image_store == "local":
        return ImageStore(settings.store_dir)
    return S3ImageStore(
        S3Location(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            timeout_seconds=settings.s3_timeout_seconds,
            max_attempts=settings.s3_max_attempts,
        )
    )


def read_price_table(settings: ImageSettings) -> PriceTable:
    return configured_price_table(settings.price_table)


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


def build_dish_model(settings: ImageSettings, prices: PriceTable) -> DishModel | None:
    """The optional dish model: None unless RECIPEIMAGE_DISH_MODEL names a text
    model of the price table and an OpenAI key is set."""
    if not settings.dish_model_enabled:
        return None
    if settings.dish_model not in prices.text_models:
        raise ConfigError(
            f"RECIPEIMAGE_DISH_MODEL={settings.dish_model!r} is not a text model of the price table"
        )
    return OpenAIDishModel(
        api_key=settings.openai_api_key,
        model=settings.dish_model,
        base_url=settings.openai_base_url or None,
        timeout_seconds=settings.dish_model_timeout_seconds,
    )


def check_database(settings: ImageSettings) -> None:
    """Migrate embedded SQLite, or check a shared database is migrated, once,
    before the workers start (so they never race to migrate)."""
    engine = create_db_engine(settings.database_url, pool_size=1)
    try:
        prepare_database("image", engine, settings.database_url)
    finally:
        engine.dispose()


def main() -> int:
    common = CommonSettings.from_env(os.environ)
    configure_logging(common.log_level)
    stopping = catch_stop_signals(common.grace_seconds)
    try:
        settings = ImageSettings.from_env(os.environ)
        if common.server_processes > 1:
            return serve_workers(settings, common, stopping)
        app = build_app(settings, Access.from_settings(common))
    except (ConfigError, OSError) as exc:
        log.error("cannot start the image service", extra={"error": str(exc)})
        return 2
    serve_until_signalled(app.server, common.grace_seconds, on_stop=app.close, stopping=stopping)
    return 0


def serve_workers(
    settings: ImageSettings, common: CommonSettings, stopping: threading.Event
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
    """One of several server processes (spawned by main): its own app, pool,
    channel and jobs on the port its parent reserved; its metrics on a
    loopback port the parent gathers from."""
    common = CommonSettings.from_env(os.environ)
    configure_logging(common.log_level)
    stopping = catch_stop_signals(common.grace_seconds)
    stop_when_orphaned(stopping)
    try:
        settings = ImageSettings.from_env(os.environ)
        app = build_app(
            replace(settings, address=seat.address, metrics_port=0, reuse_port=True),
            Access.from_settings(common),
        )
        metrics_port = app.metrics.serve_on_loopback() if settings.metrics_port else None
    except (ConfigError, OSError) as exc:
        log.error("cannot start the image service", extra={"error": str(exc), "worker": seat.index})
        sys.exit(2)
    seat.serving(metrics_port)
    serve_until_signalled(app.server, common.grace_seconds, on_stop=app.close, stopping=stopping)


if __name__ == "__main__":
    sys.exit(main())
