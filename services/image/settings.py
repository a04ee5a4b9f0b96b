"""ImageService settings: every variable next to its default.

Read once by the composition root (services/image/main.py); nothing here reads
os.environ by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.config import (
    ConfigError,
    env_choice,
    env_float,
    env_int,
    env_path,
    env_str,
)
from services.common.transport import (
    ChannelTls,
    ServerTls,
    WireLimits,
    budget_channel_tls_from_env,
    server_tls_from_env,
    wire_limits_from_env,
)

PROVIDERS = ("auto", "openai", "offline")
IMAGE_STORES = ("local", "s3")
WEEK_SECONDS = 7 * 24 * 3600.0

# The cheapest active GPT image model in the 2026-11-24 price table whose low and medium
# 1024x1024 figures (5,880 and 13,170 micros) fit the free tier's 80,000-micro
# per-generation limit; gpt-image-2.5-flare costs the same, and gpt-image-2.5-sunburst is
# the replacement the table names for the retired models. build_app checks it against the
# table at start.
DEFAULT_MODEL = "gpt-image-2.5-sunburst"


@dataclass(frozen=True)
class ImageSettings:
    address: str
    database_url: str
    max_workers: int
    max_concurrent_rpcs: int
    metrics_port: int
    metrics_address: str
    db_pool_size: int
    store_dir: Path
    budget_target: str
    budget_deadline_seconds: float
    provider: str
    openai_api_key: str
    openai_base_url: str
    openai_timeout_seconds: float
    openai_max_retries: int
    default_model: str
    default_size: str
    default_quality: str
    cache_ttl_days: int
    price_table: Path | None
    similarity_threshold: float
    cache_purge_interval_seconds: float
    settlement_interval_seconds: float
    generation_lease_seconds: float
    single_flight_wait_seconds: float
    fallback_image: Path | None
    # None: plaintext, for this server and for the channel to BudgetService.
    tls: ServerTls | None = None
    budget_tls: ChannelTls | None = None
    # Message size caps and keepalive of this server and of the channel.
    wire: WireLimits = WireLimits()
    # The optional dish model (a text model of the price table's text_models):
    # empty, or without an OpenAI key, the rules alone name dishes.
    dish_model: str = ""
    dish_model_timeout_seconds: float = 5.0
    # How many GenerateImage misses may be past the cache at once (each holds
    # an RPC thread while it generates); 0: three quarters of max_workers.
    max_concurrent_generations: int = 0
    # Where image bytes live: "local" (store_dir) or "s3" (the s3 fields).
    image_store: str = "local"
    s3_bucket: str = ""
    s3_prefix: str = "images/"
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_timeout_seconds: float = 10.0
    s3_max_attempts: int = 3
    # Bytes nothing refers to any more are deleted this long after the retention
    # job first saw them unreferenced; the job runs every interval (0: not here).
    retention_grace_seconds: float = WEEK_SECONDS
    retention_interval_seconds: float = 3600.0
    # Set in a worker of several server processes, never from the environment.
    reuse_port: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ImageSettings:
        price_table = env_str(env, "RECIPEIMAGE_PRICE_TABLE", "")
        fallback_image = env_str(env, "RECIPEIMAGE_FALLBACK_IMAGE", "")
        threshold = env_float(env, "RECIPEIMAGE_SIMILARITY_THRESHOLD", 0.6, minimum=0.0)
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"RECIPEIMAGE_SIMILARITY_THRESHOLD={threshold} is not in (0, 1]")
        image_store = env_choice(env, "RECIPEIMAGE_IMAGE_STORE", "local", IMAGE_STORES)
        s3_bucket = env_str(env, "RECIPEIMAGE_S3_BUCKET", "")
        if image_store == "s3" and not s3_bucket:
            raise ConfigError("RECIPEIMAGE_IMAGE_STORE=s3 needs RECIPEIMAGE_S3_BUCKET")
        return cls(
            address=env_str(env, "RECIPEIMAGE_IMAGE_ADDRESS", "127.0.0.1:50052"),
            database_url=env_str(env, "RECIPEIMAGE_IMAGE_DATABASE_URL", "sqlite:///var/image.db"),
            max_workers=env_int(env, "RECIPEIMAGE_IMAGE_MAX_WORKERS", 32, minimum=1),
            max_concurrent_rpcs=env_int(
                env, "RECIPEIMAGE_IMAGE_MAX_CONCURRENT_RPCS", 256, minimum=1
            ),
            # 0 disables the /metrics endpoint.
            metrics_port=env_int(env, "RECIPEIMAGE_IMAGE_METRICS_PORT", 9102),
            metrics_address=env_str(env, "RECIPEIMAGE_IMAGE_METRICS_ADDRESS", "127.0.0.1"),
            db_pool_size=env_int(env, "RECIPEIMAGE_IMAGE_DB_POOL_SIZE", 10, minimum=1),
            store_dir=env_path(env, "RECIPEIMAGE_IMAGE_STORE_DIR", "var/images"),
            budget_target=env_str(env, "RECIPEIMAGE_BUDGET_TARGET", "127.0.0.1:50051"),
            budget_deadline_seconds=env_float(
                env, "RECIPEIMAGE_BUDGET_DEADLINE_SECONDS", 5.0, minimum=0.001
            ),
            provider=env_choice(env, "RECIPEIMAGE_PROVIDER", "auto", PROVIDERS),
            # The openai convention, unprefixed.
            openai_api_key=env_str(env, "OPENAI_API_KEY", ""),
            # Empty: the openai client's own default (OpenAI's API).
            openai_base_url=env_str(env, "RECIPEIMAGE_OPENAI_BASE_URL", ""),
            openai_timeout_seconds=env_float(
                env, "RECIPEIMAGE_OPENAI_TIMEOUT_SECONDS", 120.0, minimum=0.001
            ),
            openai_max_retries=env_int(env, "RECIPEIMAGE_OPENAI_MAX_RETRIES", 2),
            default_model=env_str(env, "RECIPEIMAGE_DEFAULT_MODEL", DEFAULT_MODEL),
            default_size=env_str(env, "RECIPEIMAGE_DEFAULT_SIZE", "1024x1024"),
            default_quality=env_choice(
                env, "RECIPEIMAGE_DEFAULT_QUALITY", "medium", ("low", "medium", "high")
            ),
            cache_ttl_days=env_int(env, "RECIPEIMAGE_CACHE_TTL_DAYS", 30, minimum=1),
            # Empty: the table shipped with the code (services/common/price_table.json).
            price_table=Path(price_table) if price_table else None,
            # The least score a similar-dish image needs; callers may only raise it.
            similarity_threshold=threshold,
            # 0: no purge job in this process (another replica, or the admin RPC, purges).
            cache_purge_interval_seconds=env_float(
                env, "RECIPEIMAGE_CACHE_PURGE_INTERVAL_SECONDS", 3600.0
            ),
            # How often unacknowledged commits and releases are retried at BudgetService;
            # 0: no settler in this process (another replica settles).
            settlement_interval_seconds=env_float(
                env, "RECIPEIMAGE_SETTLEMENT_INTERVAL_SECONDS", 10.0
            ),
            # A generation's lease, renewed every third of this while it runs: one not
            # renewed for this long belongs to a process that died and is taken over.
            generation_lease_seconds=env_float(
                env, "RECIPEIMAGE_GENERATION_LEASE_SECONDS", 30.0, minimum=1.0
            ),
            # How long a request waits for an identical generation before making its own.
            single_flight_wait_seconds=env_float(
                env, "RECIPEIMAGE_SINGLE_FLIGHT_WAIT_SECONDS", 300.0
            ),
            # Empty: no fallback; a provider failure is an error for the caller.
            fallback_image=Path(fallback_image) if fallback_image else None,
            tls=server_tls_from_env(env),
            budget_tls=budget_channel_tls_from_env(env),
            wire=wire_limits_from_env(env),
            dish_model=env_str(env, "RECIPEIMAGE_DISH_MODEL", ""),
            dish_model_timeout_seconds=env_float(
                env, "RECIPEIMAGE_DISH_MODEL_TIMEOUT_SECONDS", 5.0, minimum=0.001
            ),
            max_concurrent_generations=env_int(
                env, "RECIPEIMAGE_IMAGE_MAX_CONCURRENT_GENERATIONS", 0, minimum=0
            ),
            image_store=image_store,
            s3_bucket=s3_bucket,
            s3_prefix=env_str(env, "RECIPEIMAGE_S3_PREFIX", "images/").lstrip("/"),
            # Empty: AWS itself; set for MinIO, Ceph, R2 and the like.
            s3_endpoint_url=env_str(env, "RECIPEIMAGE_S3_ENDPOINT_URL", ""),
            # Empty credentials and region: boto3's chain (AWS_ACCESS_KEY_ID, AWS_REGION,
            # AWS_PROFILE, an instance or task role).
            s3_region=env_str(env, "RECIPEIMAGE_S3_REGION", ""),
            s3_access_key_id=env_str(env, "RECIPEIMAGE_S3_ACCESS_KEY_ID", ""),
            s3_secret_access_key=env_str(env, "RECIPEIMAGE_S3_SECRET_ACCESS_KEY", ""),
            s3_timeout_seconds=env_float(
                env, "RECIPEIMAGE_S3_TIMEOUT_SECONDS", 10.0, minimum=0.001
            ),
            s3_max_attempts=env_int(env, "RECIPEIMAGE_S3_MAX_ATTEMPTS", 3, minimum=1),
            retention_grace_seconds=env_float(
                env, "RECIPEIMAGE_IMAGE_RETENTION_GRACE_SECONDS", WEEK_SECONDS
            ),
            retention_interval_seconds=env_float(
                env, "RECIPEIMAGE_IMAGE_RETENTION_INTERVAL_SECONDS", 3600.0
            ),
        )

    def resolved_provider(self) -> str:
        """`auto` means openai when an API key is set, else offline."""
        if self.provider == "auto":
            return "openai" if self.openai_api_key else "offline"
        return self.provider

    @property
    def dish_model_enabled(self) -> bool:
        """The dish model is asked only when one is named and an OpenAI key is set."""
        return bool(self.dish_model and self.openai_api_key)

    @property
    def generation_drain_seconds(self) -> float:
        """How long shutdown waits for paid generations still running: every
        attempt the provider client may make (with room for Retry-After waits),
        then the commit's calls to BudgetService."""
        attempts = self.openai_max_retries + 1
        return attempts * (self.openai_timeout_seconds + 5.0) + 3 * self.budget_deadline_seconds
