"""BudgetService settings: every environment variable it reads, next to its default.

Tier limits are written as `daily=<micros>,monthly=<micros>,per_generation=<micros>`;
a tier's rate rules as `requests_per_minute=20,request_burst=10,
generations_per_hour=30,max_concurrent_generations=2`; a key left out keeps
that tier's default, and 0 disables a rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from services.budget.domain.abuse import (
    DEFAULT_DURATIONS,
    DEFAULT_ESCALATION_DAYS,
    AbuseSettings,
    Trigger,
    TriggerRule,
)
from services.budget.domain.admission import (
    AdmissionSettings,
    SystemRates,
    TierRates,
    parse_shadow,
)
from services.budget.domain.alert_rules import AlertRules
from services.budget.domain.limits import Tier, TierLimits
from services.budget.domain.webhooks import WebhookDestination, parse_destinations
from services.common.config import (
    ConfigError,
    env_choice,
    env_float,
    env_int,
    env_str,
)
from services.common.transport import (
    ServerTls,
    WireLimits,
    server_tls_from_env,
    wire_limits_from_env,
)

_TIER_KEYS = {
    "daily": "daily_micros",
    "monthly": "monthly_micros",
    "per_generation": "per_generation_micros",
}
_RATE_KEYS = {
    name: name
    for name in (
        "requests_per_minute",
        "request_burst",
        "generations_per_hour",
        "max_concurrent_generations",
    )
}


@dataclass(frozen=True)
class BudgetSettings:
    address: str
    database_url: str
    max_workers: int
    max_concurrent_rpcs: int
    metrics_port: int
    metrics_address: str
    db_pool_size: int
    tiers: Mapping[Tier, TierLimits]
    default_tier: Tier
    system_daily_limit_micros: int
    system_monthly_limit_micros: int
    reservation_ttl_seconds: int
    # 0: this process runs no reaper (another replica, or a test, reaps).
    reaper_interval_seconds: float
    time_zone: ZoneInfo
    # Admission control: rate rules, concurrency caps, shadow mode.
    admission: AdmissionSettings
    # Abuse prevention: the triggers of automatic blocks, their durations.
    abuse: AbuseSettings
    # Budget alerts: the rules' thresholds; how often this process evaluates
    # the periodic rules (0: never) and polls for WatchAlerts streams.
    alerts: AlertRules
    alert_evaluation_interval_seconds: float
    alert_watch_poll_seconds: float
    alert_max_watchers: int
    # Alert webhooks: where alerts are sent, how often this process sends
    # (0: never), each attempt's timeout, the longest wait between retries.
    webhooks: WebhookSettings
    # None: plaintext. Message size caps and keepalive (services/common/transport.py).
    tls: ServerTls | None = None
    wire: WireLimits = WireLimits()
    # The price table cost optimization prices what-ifs with (ImageService
    # reads the same variable); None: the shipped one.
    price_table: Path | None = None
    # Set in a worker of several server processes, never from the environment.
    reuse_port: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BudgetSettings:
        return cls(
            address=env_str(env, "RECIPEIMAGE_BUDGET_ADDRESS", "127.0.0.1:50051"),
            database_url=parse_database_url(
                "RECIPEIMAGE_BUDGET_DATABASE_URL",
                env_str(env, "RECIPEIMAGE_BUDGET_DATABASE_URL", "sqlite:///var/budget.db"),
            ),
            max_workers=env_int(env, "RECIPEIMAGE_BUDGET_MAX_WORKERS", 16, minimum=1),
            max_concurrent_rpcs=env_int(
                env, "RECIPEIMAGE_BUDGET_MAX_CONCURRENT_RPCS", 512, minimum=1
            ),
            metrics_port=env_int(env, "RECIPEIMAGE_BUDGET_METRICS_PORT", 9101),
            metrics_address=env_str(env, "RECIPEIMAGE_BUDGET_METRICS_ADDRESS", "127.0.0.1"),
            db_pool_size=env_int(env, "RECIPEIMAGE_BUDGET_DB_POOL_SIZE", 8, minimum=1),
            tiers={
                Tier.FREE: parse_tier_limits(
                    env,
                    "RECIPEIMAGE_TIER_FREE",
                    "daily=500000,monthly=5000000,per_generation=80000",
                ),
                Tier.PREMIUM: parse_tier_limits(
                    env,
                    "RECIPEIMAGE_TIER_PREMIUM",
                    "daily=2000000,monthly=25000000,per_generation=120000",
                ),
                Tier.PRO: parse_tier_limits(
                    env,
                    "RECIPEIMAGE_TIER_PRO",
                    "daily=10000000,monthly=100000000,per_generation=120000",
                ),
            },
            default_tier=Tier(
                env_choice(env, "RECIPEIMAGE_DEFAULT_TIER", "free", tuple(t.value for t in Tier))
            ),
            system_daily_limit_micros=env_int(
                env, "RECIPEIMAGE_SYSTEM_DAILY_LIMIT_MICROS", 50_000_000
            ),
            system_monthly_limit_micros=env_int(
                env, "RECIPEIMAGE_SYSTEM_MONTHLY_LIMIT_MICROS", 1_000_000_000
            ),
            reservation_ttl_seconds=env_int(
                env, "RECIPEIMAGE_RESERVATION_TTL_SECONDS", 900, minimum=1
            ),
            reaper_interval_seconds=env_float(env, "RECIPEIMAGE_REAPER_INTERVAL_SECONDS", 30.0),
            time_zone=parse_time_zone(
                "RECIPEIMAGE_BUDGET_TIME_ZONE", env_str(env, "RECIPEIMAGE_BUDGET_TIME_ZONE", "UTC")
            ),
            admission=admission_settings(env),
            abuse=abuse_settings(env),
            tls=server_tls_from_env(env),
            wire=wire_limits_from_env(env),
            price_table=Path(table)
            if (table := env_str(env, "RECIPEIMAGE_PRICE_TABLE", ""))
            else None,
            alerts=alert_rules(env),
            alert_evaluation_interval_seconds=env_float(
                env, "RECIPEIMAGE_ALERT_EVALUATION_INTERVAL_SECONDS", 60.0
            ),
            alert_watch_poll_seconds=env_float(env, "RECIPEIMAGE_ALERT_WATCH_POLL_SECONDS", 1.0),
            alert_max_watchers=env_int(env, "RECIPEIMAGE_ALERT_MAX_WATCHERS", 8, minimum=1),
            webhooks=webhook_settings(env),
        )


@dataclass(frozen=True)
class WebhookSettings:
    destinations: tuple[WebhookDestination, ...]
    interval_seconds: float
    timeout_seconds: float
    longest_retry_seconds: int


def webhook_settings(env: Mapping[str, str]) -> WebhookSettings:
    """The alert webhooks' destinations (a JSON list, domain.webhooks) and pace."""
    name = "RECIPEIMAGE_ALERT_WEBHOOKS"
    try:
        destinations = parse_destinations(env_str(env, name, ""))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return WebhookSettings(
        destinations=destinations,
        interval_seconds=env_float(env, "RECIPEIMAGE_ALERT_WEBHOOK_INTERVAL_SECONDS", 5.0),
        timeout_seconds=env_float(
            env, "RECIPEIMAGE_ALERT_WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1
        ),
        longest_retry_seconds=env_int(
            env, "RECIPEIMAGE_ALERT_WEBHOOK_LONGEST_RETRY_SECONDS", 3600, minimum=10
        ),
    )


# Each trigger's threshold and window (seconds) settings, with their
# defaults; a threshold of 0 disables the trigger.
_TRIGGER_SETTINGS = {
    Trigger.CONTENT_POLICY_STREAK: (
        ("RECIPEIMAGE_ABUSE_CONTENT_POLICY_STREAK", 5),
        ("RECIPEIMAGE_ABUSE_CONTENT_POLICY_WINDOW_SECONDS", 3600),
    ),
    Trigger.INPUT_REJECTED_STREAK: (
        ("RECIPEIMAGE_ABUSE_INPUT_REJECTED_STREAK", 5),
        ("RECIPEIMAGE_ABUSE_INPUT_REJECTED_WINDOW_SECONDS", 3600),
    ),
    Trigger.IGNORED_RATE_LIMITS: (
        ("RECIPEIMAGE_ABUSE_RATE_LIMIT_REFUSALS", 30),
        ("RECIPEIMAGE_ABUSE_RATE_LIMIT_WINDOW_SECONDS", 60),
    ),
    Trigger.CACHE_BUSTING: (
        ("RECIPEIMAGE_ABUSE_CACHE_BUSTING_PROMPTS", 5),
        ("RECIPEIMAGE_ABUSE_CACHE_BUSTING_WINDOW_SECONDS", 3600),
    ),
}


def _percents(env: Mapping[str, str], name: str, default: str) -> tuple[int, ...]:
    raw = env_str(env, name, default)
    try:
        values = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: a comma list of percents, e.g. 50,80,100") from None
    if any(not 1 <= value <= 1000 for value in values):
        raise ConfigError(f"{name}={raw!r}: each percent must be from 1 to 1000")
    return values


def alert_rules(env: Mapping[str, str]) -> AlertRules:
    """The alert rules' thresholds (domain.alert_rules)."""
    return AlertRules(
        user_thresholds=_percents(env, "RECIPEIMAGE_ALERT_USER_THRESHOLDS", "50,80,100"),
        system_thresholds=_percents(env, "RECIPEIMAGE_ALERT_SYSTEM_THRESHOLDS", "80,100"),
        burn_rate_hours=env_int(env, "RECIPEIMAGE_ALERT_BURN_RATE_HOURS", 3, minimum=1),
        unusual_factor=env_int(env, "RECIPEIMAGE_ALERT_UNUSUAL_FACTOR", 5, minimum=1),
        baseline_days=env_int(env, "RECIPEIMAGE_ALERT_BASELINE_DAYS", 14, minimum=1),
        unusual_spend_floor_micros=env_int(
            env, "RECIPEIMAGE_ALERT_UNUSUAL_SPEND_FLOOR_MICROS", 1_000_000, minimum=1
        ),
        unusual_generations_floor=env_int(
            env, "RECIPEIMAGE_ALERT_UNUSUAL_GENERATIONS_FLOOR", 50, minimum=1
        ),
        spike_percent=env_int(env, "RECIPEIMAGE_ALERT_SPIKE_PERCENT", 25),
        spike_min_attempts=env_int(env, "RECIPEIMAGE_ALERT_SPIKE_MIN_ATTEMPTS", 20, minimum=1),
        cache_collapse_percent=env_int(env, "RECIPEIMAGE_ALERT_CACHE_COLLAPSE_PERCENT", 50),
        cache_min_lookups=env_int(env, "RECIPEIMAGE_ALERT_CACHE_MIN_LOOKUPS", 20, minimum=1),
    )


def abuse_settings(env: Mapping[str, str]) -> AbuseSettings:
    """Each trigger's threshold and window, the blocks' durations by level,
    and how long without an automatic block resets the level."""
    rules = {
        trigger: TriggerRule(env_int(env, *threshold), env_int(env, *window, minimum=1))
        for trigger, (threshold, window) in _TRIGGER_SETTINGS.items()
    }
    name = "RECIPEIMAGE_ABUSE_BLOCK_DURATIONS"
    raw = env_str(env, name, ",".join(map(str, DEFAULT_DURATIONS)))
    try:
        durations = tuple(int(part.strip().replace("_", "")) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: a comma list of seconds, e.g. 900,3600,86400") from None
    if any(seconds <= 0 for seconds in durations):
        raise ConfigError(f"{name}={raw!r}: every duration must be at least 1 second")
    escalation = env_int(env, "RECIPEIMAGE_ABUSE_ESCALATION_DAYS", DEFAULT_ESCALATION_DAYS)
    return AbuseSettings(rules, durations, escalation)


def admission_settings(env: Mapping[str, str]) -> AdmissionSettings:
    """Each tier's rate rules and cap, the system's, and the shadowed rules."""
    tiers = {
        Tier.FREE: parse_tier_rates(
            env,
            "RECIPEIMAGE_RATE_FREE",
            "requests_per_minute=20,request_burst=10,generations_per_hour=30,"
            "max_concurrent_generations=2",
        ),
        Tier.PREMIUM: parse_tier_rates(
            env,
            "RECIPEIMAGE_RATE_PREMIUM",
            "requests_per_minute=60,request_burst=20,generations_per_hour=120,"
            "max_concurrent_generations=4",
        ),
        Tier.PRO: parse_tier_rates(
            env,
            "RECIPEIMAGE_RATE_PRO",
            "requests_per_minute=120,request_burst=40,generations_per_hour=600,"
            "max_concurrent_generations=8",
        ),
    }
    system = SystemRates(
        requests_per_second=env_int(env, "RECIPEIMAGE_SYSTEM_REQUESTS_PER_SECOND", 100),
        request_burst=env_int(env, "RECIPEIMAGE_SYSTEM_REQUEST_BURST", 200),
        generations_per_minute=env_int(env, "RECIPEIMAGE_SYSTEM_GENERATIONS_PER_MINUTE", 50),
        max_concurrent_generations=env_int(
            env, "RECIPEIMAGE_SYSTEM_MAX_CONCURRENT_GENERATIONS", 50
        ),
    )
    raw_shadow = env_str(env, "RECIPEIMAGE_RATE_SHADOW", "")
    try:
        shadow = parse_shadow(raw_shadow)
    except ValueError:
        raise ConfigError(
            f"RECIPEIMAGE_RATE_SHADOW={raw_shadow!r}: use all, or a comma list of user_requests, "
            "user_generations, system_requests, system_generations, user_concurrency, "
            "system_concurrency"
        ) from None
    return AdmissionSettings(tiers, system, shadow)


def parse_tier_rates(env: Mapping[str, str], name: str, default: str) -> TierRates:
    """`requests_per_minute=..,request_burst=..,generations_per_hour=..,
    max_concurrent_generations=..`; a key left out keeps its value from default."""
    values = _parse_pairs(name, default, {}, _RATE_KEYS)
    return TierRates(**_parse_pairs(name, env_str(env, name, default), values, _RATE_KEYS))


def parse_tier_limits(env: Mapping[str, str], name: str, default: str) -> TierLimits:
    """`daily=<micros>,monthly=<micros>,per_generation=<micros>`; a key left out
    keeps its value from default."""
    values = _parse_limits(name, default, {})
    return TierLimits(**_parse_limits(name, env_str(env, name, default), values))


def _parse_limits(name: str, raw: str, defaults: dict[str, int]) -> dict[str, int]:
    return _parse_pairs(name, raw, defaults, _TIER_KEYS)


def _parse_pairs(
    name: str, raw: str, defaults: dict[str, int], keys: Mapping[str, str]
) -> dict[str, int]:
    values = dict(defaults)
    seen: set[str] = set()
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        key, sep, number = (s.strip() for s in part.partition("="))
        if not sep or key not in keys:
            raise ConfigError(
                f"{name}: {part!r} is not one of " + ", ".join(f"{k}=<n>" for k in keys)
            )
        if key in seen:
            raise ConfigError(f"{name}: {key} is given twice")
        seen.add(key)
        try:
            value = int(number.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{name}: {key}={number!r} is not an integer") from None
        if value < 0:
            raise ConfigError(f"{name}: {key}={value} is negative")
        values[keys[key]] = value
    missing = set(keys.values()) - set(values)
    if missing:  # only the defaults can lack a key
        raise ConfigError(f"{name}: missing {', '.join(sorted(missing))}")
    return values


def parse_database_url(name: str, raw: str) -> str:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"{name} is not a database URL (sqlite:///path or postgresql://...)"
        ) from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql", "postgres"):
        raise ConfigError(f"{name}: {backend!r} is not supported; use sqlite or postgresql")
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        raise ConfigError(f"{name}: an in-memory SQLite database is not shared; name a file")
    return raw


def parse_time_zone(name: str, raw: str) -> ZoneInfo:
    try:
        return ZoneInfo(raw.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"{name}={raw!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)"
        ) from None
