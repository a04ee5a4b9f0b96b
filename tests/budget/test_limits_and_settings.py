"""Tier limits, the effective windows of a user, and the settings that set them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.budget.domain.limits import (
    DEFAULT_TIERS,
    LimitPolicy,
    LimitValues,
    Tier,
    TierLimits,
    UserSettings,
    held_window_keys,
)
from services.budget.domain.windows import Span
from services.budget.settings import BudgetSettings
from services.common.config import ConfigError

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def policy(**changes) -> LimitPolicy:  # type: ignore[no-untyped-def]
    options = {
        "tiers": DEFAULT_TIERS,
        "default_tier": Tier.FREE,
        "system_daily_micros": 50_000_000,
        "system_monthly_micros": 1_000_000_000,
        "zone": ZoneInfo("UTC"),
    }
    options.update(changes)
    return LimitPolicy(
        options["tiers"],
        options["default_tier"],
        options["system_daily_micros"],
        options["system_monthly_micros"],
        options["zone"],
    )


def test_default_tiers_are_the_original_plan_in_micros() -> None:
    assert DEFAULT_TIERS[Tier.FREE] == TierLimits(500_000, 5_000_000, 80_000)
    assert DEFAULT_TIERS[Tier.PREMIUM] == TierLimits(2_000_000, 25_000_000, 120_000)
    assert DEFAULT_TIERS[Tier.PRO] == TierLimits(10_000_000, 100_000_000, 120_000)


def test_a_user_without_a_row_is_on_the_default_tier() -> None:
    assert policy().tier_of(None) is Tier.FREE
    assert policy(default_tier=Tier.PRO).tier_of(None) is Tier.PRO
    assert policy().tier_of("premium") is Tier.PREMIUM


def test_four_windows_with_limits_and_sources_in_lock_order() -> None:
    rules = policy()
    windows = rules.windows(rules.effective(UserSettings("u1", Tier.PREMIUM)), NOW)
    assert [(w.key.name, w.limit_micros, w.source) for w in windows] == [
        ("user_daily", 2_000_000, "tier:premium"),
        ("user_monthly", 25_000_000, "tier:premium"),
        ("system_daily", 50_000_000, "system"),
        ("system_monthly", 1_000_000_000, "system"),
    ]
    assert [w.reason for w in windows] == [
        "DAILY_LIMIT_EXCEEDED",
        "MONTHLY_LIMIT_EXCEEDED",
        "SYSTEM_DAILY_LIMIT_EXCEEDED",
        "SYSTEM_MONTHLY_LIMIT_EXCEEDED",
    ]
    assert windows[0].key.start_date == date(2026, 3, 10)
    assert windows[1].key.start_date == date(2026, 3, 1)
    assert windows[0].period.end - NOW == timedelta(hours=12)


def test_overrides_replace_the_tier_and_caps_only_ever_lower() -> None:
    rules = policy()
    user = UserSettings(
        "u1",
        Tier.FREE,
        overrides=LimitValues(daily_micros=3_000_000, per_generation_micros=50_000),
        cap=LimitValues(daily_micros=1_000_000, monthly_micros=9_000_000),
    )
    limits = rules.effective(user)
    # The override raised the day above the tier's; the cap lowered it again.
    assert (limits.user[Span.DAY].micros, limits.user[Span.DAY].source) == (1_000_000, "cap")
    # A cap above the tier's monthly 5 USD changes nothing.
    assert (limits.user[Span.MONTH].micros, limits.user[Span.MONTH].source) == (
        5_000_000,
        "tier:free",
    )
    assert (limits.per_generation.micros, limits.per_generation.source) == (50_000, "override")
    # A cap equal to the limit leaves the limit's own rule named.
    same = rules.effective(UserSettings("u1", cap=LimitValues(per_generation_micros=80_000)))
    assert same.per_generation.source == "tier:free"
    # A zero cap is a pause: nothing may be spent.
    paused = rules.effective(UserSettings("u1", cap=LimitValues(daily_micros=0)))
    assert (paused.user[Span.DAY].micros, paused.user[Span.DAY].source) == (0, "cap")


def test_system_limits_set_by_an_admin_replace_the_configured_ones() -> None:
    rules = policy()
    limits = rules.effective(UserSettings("u1"), LimitValues(daily_micros=7))
    assert (limits.system[Span.DAY].micros, limits.system[Span.DAY].source) == (
        7,
        "system:override",
    )
    assert (limits.system[Span.MONTH].micros, limits.system[Span.MONTH].source) == (
        1_000_000_000,
        "system",
    )


def test_held_keys_match_the_windows_of_the_day_they_were_taken() -> None:
    rules = policy()
    windows = rules.windows(rules.effective(UserSettings("u1")), NOW)
    assert held_window_keys("u1", date(2026, 3, 10), date(2026, 3, 1)) == [w.key for w in windows]


def test_a_policy_needs_every_tier() -> None:
    with pytest.raises(ValueError, match="pro"):
        policy(tiers={Tier.FREE: DEFAULT_TIERS[Tier.FREE], Tier.PREMIUM: DEFAULT_TIERS[Tier.FREE]})


def test_settings_defaults() -> None:
    settings = BudgetSettings.from_env({})
    assert settings.address == "127.0.0.1:50051"
    assert settings.database_url == "sqlite:///var/budget.db"
    assert settings.max_workers == 16
    assert settings.max_concurrent_rpcs == 512
    assert settings.metrics_port == 9101
    assert settings.db_pool_size == 8
    assert dict(settings.tiers) == dict(DEFAULT_TIERS)
    assert settings.default_tier is Tier.FREE
    assert settings.system_daily_limit_micros == 50_000_000
    assert settings.system_monthly_limit_micros == 1_000_000_000
    assert settings.reservation_ttl_seconds == 900
    assert settings.reaper_interval_seconds == 30.0
    assert settings.time_zone == ZoneInfo("UTC")


def test_settings_from_the_environment() -> None:
    settings = BudgetSettings.from_env(
        {
            "RECIPEIMAGE_TIER_FREE": "daily=1_000, monthly=2000,per_generation=300",
            "RECIPEIMAGE_TIER_PRO": "per_generation=250000",
            "RECIPEIMAGE_DEFAULT_TIER": "Premium",
            "RECIPEIMAGE_SYSTEM_DAILY_LIMIT_MICROS": "7",
            "RECIPEIMAGE_RESERVATION_TTL_SECONDS": "60",
            "RECIPEIMAGE_REAPER_INTERVAL_SECONDS": "0.5",
            "RECIPEIMAGE_BUDGET_TIME_ZONE": "Europe/Berlin",
            "RECIPEIMAGE_BUDGET_METRICS_PORT": "0",
        }
    )
    assert settings.tiers[Tier.FREE] == TierLimits(1000, 2000, 300)
    # A key left out keeps the tier's default.
    assert settings.tiers[Tier.PRO] == TierLimits(10_000_000, 100_000_000, 250_000)
    assert settings.default_tier is Tier.PREMIUM
    assert settings.system_daily_limit_micros == 7
    assert settings.reservation_ttl_seconds == 60
    assert settings.reaper_interval_seconds == 0.5
    assert settings.time_zone == ZoneInfo("Europe/Berlin")
    assert settings.metrics_port == 0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RECIPEIMAGE_TIER_FREE", "daily=lots", "not an integer"),
        ("RECIPEIMAGE_TIER_FREE", "weekly=5", "not one of"),
        ("RECIPEIMAGE_TIER_PREMIUM", "daily=-1", "negative"),
        ("RECIPEIMAGE_TIER_PRO", "daily=1,daily=2", "twice"),
        ("RECIPEIMAGE_DEFAULT_TIER", "gold", "not one of"),
        ("RECIPEIMAGE_BUDGET_TIME_ZONE", "Mars/Olympus", "time zone"),
        ("RECIPEIMAGE_RESERVATION_TTL_SECONDS", "0", "below the minimum"),
        ("RECIPEIMAGE_SYSTEM_MONTHLY_LIMIT_MICROS", "1.5", "not an integer"),
        ("RECIPEIMAGE_BUDGET_MAX_WORKERS", "0", "below the minimum"),
        ("RECIPEIMAGE_BUDGET_DATABASE_URL", "sqlite://", "in-memory"),
        ("RECIPEIMAGE_BUDGET_DATABASE_URL", "mysql://db/budget", "not supported"),
        ("RECIPEIMAGE_BUDGET_DATABASE_URL", "budget.db", "not a database URL"),
    ],
)
def test_bad_settings_are_refused_by_name(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        BudgetSettings.from_env({name: value})
    assert name in str(raised.value)
