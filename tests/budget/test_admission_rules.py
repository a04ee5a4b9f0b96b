"""The admission rules as plain values: GCRA's arithmetic, which rules apply,
and their settings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.budget.domain.admission import (
    AdmissionPolicy,
    AdmissionSettings,
    RuleName,
    SystemRates,
    TierRates,
    parse_shadow,
    rate_state,
    retry_after,
    to_micros,
)
from services.budget.domain.limits import RateLimitValues, Tier
from services.budget.settings import BudgetSettings
from services.common.config import ConfigError
from tests.budget.conftest import T0

FREE = TierRates(20, 10, 30, 2)
POLICY = AdmissionPolicy(
    AdmissionSettings(
        {tier: FREE for tier in Tier},
        SystemRates(50, 100, 0, 4),
        frozenset({RuleName.USER_GENERATIONS}),
    )
)


def test_gcra_arithmetic() -> None:
    [rule, system] = POLICY.request_rules("u1", Tier.FREE, RateLimitValues())
    assert (rule.interval_micros, rule.tolerance_micros) == (3_000_000, 27_000_000)
    assert system.interval_micros == 20_000 and system.key == "system_requests"
    assert rate_state(rule, None, T0).remaining == 10
    full = to_micros(T0) + 30_000_000  # ten calls at T0
    state = rate_state(rule, full, T0)
    assert (state.remaining, state.next_time, state.full_time) == (
        0,
        T0 + timedelta(seconds=3),
        T0 + timedelta(seconds=30),
    )
    assert retry_after(rule, full, T0) == timedelta(seconds=3)
    assert rate_state(rule, full, T0 + timedelta(seconds=4)).remaining == 1


def test_which_rules_apply() -> None:
    overrides = RateLimitValues(request_burst=3, max_concurrent_generations=5)
    [rule, _] = POLICY.request_rules("u1", Tier.FREE, overrides)
    assert (rule.limit, rule.burst, rule.source) == (20, 3, "override")
    [generations] = POLICY.generation_rules("u1", Tier.FREE, RateLimitValues())
    assert generations.shadow and generations.burst == 30  # system generations: off (0)
    cap = POLICY.user_cap("u1", Tier.FREE, overrides)
    assert cap is not None and (cap.limit, cap.source) == (5, "override")


def test_the_settings_and_their_defaults() -> None:
    settings = BudgetSettings.from_env({}).admission
    assert settings.tiers[Tier.FREE] == FREE
    assert settings.system == SystemRates(100, 200, 50, 50)
    assert settings.shadow == frozenset()
    changed = BudgetSettings.from_env(
        {"RECIPEIMAGE_RATE_PRO": "request_burst=5", "RECIPEIMAGE_RATE_SHADOW": "all"}
    ).admission
    assert changed.tiers[Tier.PRO] == TierRates(120, 5, 600, 8)
    assert changed.shadow == frozenset(RuleName)
    assert parse_shadow("user_requests, system_concurrency") == {
        RuleName.USER_REQUESTS,
        RuleName.SYSTEM_CONCURRENCY,
    }
    for bad in ({"RECIPEIMAGE_RATE_SHADOW": "everything"}, {"RECIPEIMAGE_RATE_FREE": "rpm=3"}):
        with pytest.raises(ConfigError):
            BudgetSettings.from_env(bad)
