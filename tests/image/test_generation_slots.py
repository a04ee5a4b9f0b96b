"""Generation slots (services/image/app/generation_slots.py): how many misses
one replica lets past the cache, always fewer than its RPC threads."""

from __future__ import annotations

import pytest

from services.common.config import ConfigError
from services.common.errors import QuotaExceeded
from services.image.app.generation_slots import SLOTS_EXHAUSTED, GenerationSlots, generation_slots
from services.image.settings import ImageSettings


def test_by_default_three_quarters_of_the_threads_and_never_all_of_them() -> None:
    assert generation_slots(0, 64) == 48
    assert generation_slots(0, 16) == 12
    assert generation_slots(0, 2) == 1
    assert generation_slots(0, 1) == 1  # one thread: nothing to keep for hits
    assert generation_slots(10, 16) == 10
    with pytest.raises(ConfigError, match="MAX_CONCURRENT_GENERATIONS"):
        generation_slots(16, 16)


def test_the_setting_is_read_from_the_environment() -> None:
    assert ImageSettings.from_env({}).max_concurrent_generations == 0
    env = {"RECIPEIMAGE_IMAGE_MAX_CONCURRENT_GENERATIONS": "5"}
    assert ImageSettings.from_env(env).max_concurrent_generations == 5
    with pytest.raises(ConfigError):
        ImageSettings.from_env({"RECIPEIMAGE_IMAGE_MAX_CONCURRENT_GENERATIONS": "-1"})


def test_a_miss_beyond_the_slots_is_refused_and_a_freed_slot_is_taken_again() -> None:
    slots = GenerationSlots(2)
    with slots.held(), slots.held():
        with pytest.raises(QuotaExceeded) as refused, slots.held():
            pass
        assert refused.value.info.reason == SLOTS_EXHAUSTED
        assert refused.value.retry_after.total_seconds() == 1
    with slots.held(), slots.held():
        pass
