"""ImageSettings from the environment, and the service token ImageService mints."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from services.common.auth import Authenticator, Role
from services.common.config import ConfigError
from services.image.adapters.budget_client import ServiceToken
from services.image.settings import DEFAULT_MODEL, ImageSettings
from tests.conftest import TEST_SECRET


def test_defaults_from_an_empty_environment() -> None:
    settings = ImageSettings.from_env({})
    assert settings.address == "127.0.0.1:50052"
    assert settings.database_url == "sqlite:///var/image.db"
    assert (settings.max_workers, settings.max_concurrent_rpcs) == (32, 256)
    assert (settings.metrics_port, settings.metrics_address) == (9102, "127.0.0.1")
    assert settings.db_pool_size == 10
    assert settings.store_dir == Path("var/images")
    assert settings.budget_target == "127.0.0.1:50051"
    assert settings.budget_deadline_seconds == 5.0
    assert (settings.provider, settings.resolved_provider()) == ("auto", "offline")
    assert settings.openai_base_url == ""
    assert (settings.openai_timeout_seconds, settings.openai_max_retries) == (120.0, 2)
    assert (settings.default_model, settings.default_size, settings.default_quality) == (
        DEFAULT_MODEL,
        "1024x1024",
        "medium",
    )
    assert settings.cache_ttl_days == 30
    assert settings.price_table is None
    assert settings.similarity_threshold == 0.6
    assert settings.cache_purge_interval_seconds == 3600.0
    assert settings.generation_lease_seconds == 30.0
    assert settings.single_flight_wait_seconds == 300.0
    assert settings.fallback_image is None


def test_the_environment_overrides_and_auto_picks_openai_with_a_key() -> None:
    settings = ImageSettings.from_env(
        {
            "OPENAI_API_KEY": "sk-live",
            "RECIPEIMAGE_OPENAI_MAX_RETRIES": "0",
            "RECIPEIMAGE_DEFAULT_QUALITY": "LOW",
            "RECIPEIMAGE_PRICE_TABLE": "/etc/prices.json",
            "RECIPEIMAGE_CACHE_TTL_DAYS": "7",
            "RECIPEIMAGE_SIMILARITY_THRESHOLD": "0.85",
            "RECIPEIMAGE_CACHE_PURGE_INTERVAL_SECONDS": "0",
            "RECIPEIMAGE_GENERATION_LEASE_SECONDS": "120",
            "RECIPEIMAGE_SINGLE_FLIGHT_WAIT_SECONDS": "30",
            "RECIPEIMAGE_FALLBACK_IMAGE": "/srv/placeholder.png",
        }
    )
    assert settings.resolved_provider() == "openai"
    assert settings.openai_max_retries == 0
    assert settings.default_quality == "low"
    assert settings.price_table == Path("/etc/prices.json")
    assert settings.cache_ttl_days == 7
    assert settings.similarity_threshold == 0.85
    assert settings.cache_purge_interval_seconds == 0.0
    assert (settings.generation_lease_seconds, settings.single_flight_wait_seconds) == (120, 30)
    assert settings.fallback_image == Path("/srv/placeholder.png")
    assert (
        ImageSettings.from_env(
            {"OPENAI_API_KEY": "k", "RECIPEIMAGE_PROVIDER": "offline"}
        ).resolved_provider()
        == "offline"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECIPEIMAGE_PROVIDER", "dalle"),
        ("RECIPEIMAGE_DEFAULT_QUALITY", "hd"),
        ("RECIPEIMAGE_CACHE_TTL_DAYS", "0"),
        ("RECIPEIMAGE_IMAGE_MAX_WORKERS", "many"),
        ("RECIPEIMAGE_SIMILARITY_THRESHOLD", "0"),
        ("RECIPEIMAGE_SIMILARITY_THRESHOLD", "1.5"),
        ("RECIPEIMAGE_GENERATION_LEASE_SECONDS", "0"),
        ("RECIPEIMAGE_SINGLE_FLIGHT_WAIT_SECONDS", "-1"),
    ],
)
def test_bad_values_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        ImageSettings.from_env({name: value})


def test_the_service_token_is_a_service_role_for_image_service_and_is_renewed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    authenticator = Authenticator(TEST_SECRET)
    real_time = time.time
    now = [real_time()]
    # time.time is the module's: minting and renewal both read this clock.
    monkeypatch.setattr(time, "time", lambda: now[0])
    token = ServiceToken(authenticator, ttl_seconds=3600)

    first = token.metadata()
    assert first[0][0] == "authorization"
    bearer = first[0][1].removeprefix("Bearer ")
    claims = jwt.decode(bearer, options={"verify_signature": False})
    assert (claims["sub"], claims["role"]) == ("image-service", "service")
    assert authenticator.authenticate(first).role is Role.SERVICE

    now[0] += 2000  # well within the lifetime: the same token
    assert token.metadata() == first
    now[0] += 800  # a quarter of the lifetime left: a new one
    renewed = token.metadata()
    assert renewed != first
    assert jwt.decode(renewed[0][1][7:], options={"verify_signature": False})["exp"] > claims["exp"]
