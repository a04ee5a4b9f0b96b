"""Automatic blocks: escalation (15 min, 1 h, 24 h within 7 days, back to the
first level after 7 quiet days), cache busting (variants of one prompt), an
admin's block in force is never shortened, and each crossing blocks once
however many concurrent requests cross it. Through the real server on both
databases, with a manual clock; the settings and the fingerprint in plain
Python."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from recipeimage.budget.v1 import admission_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.domain.abuse import Trigger, TriggerRule, prompt_fingerprint
from services.budget.domain.admission import TierRates
from services.budget.settings import BudgetSettings
from services.common.config import ConfigError
from services.common.timestamps import to_proto
from tests.budget.abuse_support import (
    CONTENT_POLICY,
    audit,
    block_of,
    blocks,
    generated,
    released,
    watching,
)
from tests.budget.admission_support import admit, admit_refusal
from tests.support.budget_server import admission, running_budget

SECOND = timedelta(seconds=1)


def _cross(budget, tokens, clock) -> apb.Block:  # type: ignore[no-untyped-def]
    """Two content-policy refusals (the test's threshold): the block they make."""
    for _ in range(2):
        released(budget, tokens, CONTENT_POLICY)
        clock.advance(SECOND)
    blocked = block_of(budget, tokens)
    assert blocked is not None
    return blocked


def test_blocks_escalate_within_seven_days_and_start_over_after_seven_quiet_days(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(content_policy_streak=(2, 3600))
    with running_budget(database_url, authenticator, clock=clock, abuse=abuse) as budget:
        lengths = []
        for _ in range(4):
            blocked = _cross(budget, tokens, clock)
            length = blocked.expire_time.ToDatetime() - blocked.create_time.ToDatetime()
            lengths.append((blocked.level, length))
            clock.set(blocked.expire_time.ToDatetime().replace(tzinfo=clock.now().tzinfo))
            admit(budget, tokens)  # expired
            clock.advance(timedelta(days=6, hours=23))  # less than 7 quiet days
        assert lengths == [
            (1, timedelta(minutes=15)),
            (2, timedelta(hours=1)),
            (3, timedelta(hours=24)),
            (4, timedelta(hours=24)),  # the last duration repeats
        ]
        clock.advance(timedelta(hours=1))  # 7 days since the last block ended
        again = _cross(budget, tokens, clock)
        assert again.level == 1
        assert again.expire_time == to_proto(
            again.create_time.ToDatetime().replace(tzinfo=clock.now().tzinfo)
            + timedelta(minutes=15)
        )
        assert [e.after.block.level for e in audit(budget, tokens)] == [1, 4, 3, 2, 1]


def test_configured_durations_are_used(database_url, authenticator, clock, tokens) -> None:
    abuse = watching(content_policy_streak=(2, 3600), durations=(60, 120))
    with running_budget(database_url, authenticator, clock=clock, abuse=abuse) as budget:
        first = _cross(budget, tokens, clock)
        assert first.expire_time == to_proto(
            first.create_time.ToDatetime().replace(tzinfo=clock.now().tzinfo) + timedelta(minutes=1)
        )


VARIANTS = [
    "A photo of tomato soup, rustic bowl",
    "a photo of Tomato Soup rustic bowl 2",
    "rustic bowl: a photo of tomato soup!!",
    "A  photo of tomato soup,  rustic bowl #4",
    "tomato soup, a photo of, rustic bowl 55",
    "PHOTO of a tomato soup -- rustic bowl",
]


def test_cache_busting_blocks_at_five_variants_of_one_prompt(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(cache_busting=(5, 3600))
    with running_budget(database_url, authenticator, clock=clock, abuse=abuse) as budget:
        generated(budget, tokens, VARIANTS[0])
        clock.advance(timedelta(minutes=30))
        for prompt in VARIANTS[1:4]:
            generated(budget, tokens, prompt)
            generated(budget, tokens, prompt)  # the same prompt again is no new variant
            generated(budget, tokens, "a photo of tomato stew, rustic bowl")  # another dish
            generated(budget, tokens, prompt, user="u2")  # another user's
            clock.advance(SECOND)
        assert block_of(budget, tokens) is None  # 4 variants
        clock.advance(timedelta(minutes=30))  # the first variant is an hour old
        generated(budget, tokens, VARIANTS[4])
        assert block_of(budget, tokens) is None  # still 4 within the hour
        generated(budget, tokens, VARIANTS[5])
        blocked = block_of(budget, tokens)
        assert blocked is not None
        assert (blocked.created_by, blocked.level) == ("cache_busting", 1)
        assert admit_refusal(budget, tokens).reason == "USER_BLOCKED"
        assert [e.actor for e in audit(budget, tokens)] == ["cache_busting"]
        assert block_of(budget, tokens, "u2") is None


def test_variants_that_blocked_once_do_not_block_again(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(cache_busting=(3, 3600))
    with running_budget(database_url, authenticator, clock=clock, abuse=abuse) as budget:
        for prompt in VARIANTS[:3]:
            generated(budget, tokens, prompt)
            clock.advance(SECOND)
        assert block_of(budget, tokens) is not None
        clock.advance(timedelta(minutes=15))
        admit(budget, tokens)
        generated(budget, tokens, VARIANTS[3])
        generated(budget, tokens, VARIANTS[4])
        assert block_of(budget, tokens) is None  # 2 new variants since the block
        generated(budget, tokens, VARIANTS[5])
        assert block_of(budget, tokens).level == 2  # type: ignore[union-attr]


def test_an_admin_block_in_force_is_never_shortened_or_replaced(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(content_policy_streak=(2, 3600))
    with running_budget(database_url, authenticator, clock=clock, abuse=abuse) as budget:
        request = pb.BlockUserRequest(
            user_id="u1", reason="chargeback", expire_time=to_proto(clock.now() + 10 * SECOND)
        )
        budget.stub.BlockUser(request, metadata=tokens.admin())
        released(budget, tokens, CONTENT_POLICY)  # requests sent before the block
        released(budget, tokens, CONTENT_POLICY)
        [only] = blocks(budget, tokens)
        assert (only.source, only.reason) == (apb.BLOCK_SOURCE_ADMIN, "chargeback")
        assert admit_refusal(budget, tokens).metadata["block_source"] == "admin"
        assert [e.actor for e in audit(budget, tokens)] == ["ops"]
        clock.advance(10 * SECOND)
        admit(budget, tokens)  # the admin's end stands; the crossing added nothing
        released(budget, tokens, CONTENT_POLICY)
        assert block_of(budget, tokens) is None  # the streak started over
        released(budget, tokens, CONTENT_POLICY)
        assert block_of(budget, tokens).level == 1  # type: ignore[union-attr]


def _at_once(count: int, call) -> None:  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(max_workers=count) as pool:
        for future in [pool.submit(call, n) for n in range(count)]:
            future.result()


def test_concurrent_content_policy_refusals_block_once(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(content_policy_streak=(5, 3600))
    with running_budget(database_url, authenticator, clock=clock, abuse=abuse) as budget:
        for _ in range(2):
            released(budget, tokens, CONTENT_POLICY)
        _at_once(12, lambda n: released(budget, tokens, CONTENT_POLICY))
        [blocked] = blocks(budget, tokens)
        assert blocked.created_by == "content_policy_streak"
        assert len(audit(budget, tokens)) == 1


def test_concurrent_variants_block_once(database_url, authenticator, clock, tokens) -> None:
    abuse = watching(cache_busting=(5, 3600))
    with running_budget(database_url, authenticator, clock=clock, abuse=abuse) as budget:
        for prompt in VARIANTS[:3]:
            generated(budget, tokens, prompt)
        _at_once(8, lambda n: generated(budget, tokens, f"{VARIANTS[0]} {n} !"))
        [blocked] = blocks(budget, tokens)
        assert blocked.created_by == "cache_busting"
        assert len(audit(budget, tokens)) == 1


def test_concurrent_ignored_rate_limits_block_once(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(ignored_rate_limits=(10, 60))
    rate = TierRates(
        requests_per_minute=1, request_burst=1, generations_per_hour=0, max_concurrent_generations=0
    )
    with running_budget(
        database_url, authenticator, clock=clock, admission=admission(free=rate), abuse=abuse
    ) as budget:
        admit(budget, tokens)
        _at_once(16, lambda n: admit_refusal(budget, tokens))
        [blocked] = blocks(budget, tokens)
        assert blocked.created_by == "ignored_rate_limits"
        assert len(audit(budget, tokens)) == 1


def test_the_fingerprint_drops_noise_only() -> None:
    first = prompt_fingerprint(VARIANTS[0])
    assert first is not None
    assert {prompt_fingerprint(p) for p in VARIANTS} == {first}
    assert prompt_fingerprint("a photo of tomato stew, rustic bowl") != first
    assert prompt_fingerprint("1234 !!") is None


def test_abuse_settings_defaults_and_overrides() -> None:
    defaults = BudgetSettings.from_env({}).abuse
    assert defaults.rules == {
        Trigger.CONTENT_POLICY_STREAK: TriggerRule(5, 3600),
        Trigger.INPUT_REJECTED_STREAK: TriggerRule(5, 3600),
        Trigger.IGNORED_RATE_LIMITS: TriggerRule(30, 60),
        Trigger.CACHE_BUSTING: TriggerRule(5, 3600),
    }
    assert (tuple(defaults.durations_seconds), defaults.escalation_days) == ((900, 3600, 86400), 7)
    changed = BudgetSettings.from_env(
        {
            "RECIPEIMAGE_ABUSE_CACHE_BUSTING_PROMPTS": "0",
            "RECIPEIMAGE_ABUSE_RATE_LIMIT_WINDOW_SECONDS": "120",
            "RECIPEIMAGE_ABUSE_BLOCK_DURATIONS": "60, 600",
            "RECIPEIMAGE_ABUSE_ESCALATION_DAYS": "3",
        }
    ).abuse
    assert changed.rule(Trigger.CACHE_BUSTING) is None
    assert changed.rules[Trigger.IGNORED_RATE_LIMITS] == TriggerRule(30, 120)
    assert (tuple(changed.durations_seconds), changed.escalation_days) == ((60, 600), 3)
    for bad in ("15m", "900,0", "900,,60"):
        with pytest.raises(ConfigError):
            BudgetSettings.from_env({"RECIPEIMAGE_ABUSE_BLOCK_DURATIONS": bad})
