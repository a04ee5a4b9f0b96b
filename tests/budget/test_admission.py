"""Admit and the rate rules (GCRA): a burst, then the rate; a refusal's
reason, metadata and exact retry time; a refused call consumes nothing;
system rules; shadow mode. On both databases, with a manual clock."""

from __future__ import annotations

from datetime import timedelta

import grpc
from recipeimage.budget.v1 import admission_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.domain.admission import RuleName, SystemRates, TierRates
from tests.budget.admission_support import admit, admit_refusal, rule_of
from tests.budget.conftest import T0
from tests.support.budget_server import admission, running_budget

# 20 a minute (one every 3 s), 10 at once.
FREE = TierRates(
    requests_per_minute=20, request_burst=10, generations_per_hour=0, max_concurrent_generations=0
)
MICROSECOND = timedelta(microseconds=1)


def test_a_burst_then_the_rate_and_refused_calls_consume_nothing(
    database_url, authenticator, clock, tokens
) -> None:
    with running_budget(
        database_url, authenticator, clock=clock, admission=admission(free=FREE)
    ) as budget:
        for _ in range(10):
            admit(budget, tokens)
        refusal = admit_refusal(budget, tokens)
        assert refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refusal.reason == "RATE_LIMITED"
        assert refusal.metadata == {
            "rule": "user_requests",
            "limit": "20",
            "period_seconds": "60",
            "burst": "10",
            "source": "tier:free",
        }
        assert refusal.retry_after == timedelta(seconds=3)

        # A client retrying in a loop: each refusal consumes nothing, so it
        # is admitted exactly at the retry time it was given, not later.
        for _ in range(30):
            admit_refusal(budget, tokens)
        clock.advance(timedelta(seconds=3) - MICROSECOND)
        assert admit_refusal(budget, tokens).retry_after == MICROSECOND
        clock.advance(MICROSECOND)
        admitted = admit(budget, tokens)
        assert admit_refusal(budget, tokens).retry_after == timedelta(seconds=3)

        user_rule = rule_of(admitted, apb.RATE_RULE_KIND_USER_REQUESTS)
        assert (user_rule.remaining, user_rule.limit, user_rule.burst) == (0, 20, 10)
        assert user_rule.next_time.ToDatetime().replace(tzinfo=clock.now().tzinfo) == (
            clock.now() + timedelta(seconds=3)
        )
        # Another user has its own allowance.
        for _ in range(10):
            admit(budget, tokens, "u2")

        limits = budget.stub.GetLimits(pb.GetLimitsRequest(), metadata=tokens.user("u1"))
        shown = rule_of(limits, apb.RATE_RULE_KIND_USER_REQUESTS)
        assert (shown.remaining, shown.source, shown.shadow) == (0, "tier:free", False)
        assert shown.full_time.ToDatetime().replace(tzinfo=clock.now().tzinfo) == (
            T0 + timedelta(seconds=33)
        )
        clock.set(T0 + timedelta(seconds=33))
        limits = budget.stub.GetLimits(pb.GetLimitsRequest(), metadata=tokens.user("u1"))
        shown = rule_of(limits, apb.RATE_RULE_KIND_USER_REQUESTS)
        assert shown.remaining == 10 and not shown.HasField("next_time")
        for _ in range(10):
            admit(budget, tokens)
        assert admit_refusal(budget, tokens).reason == "RATE_LIMITED"


def test_the_system_rule_refuses_every_user_and_its_refusal_moves_no_user_allowance(
    database_url, authenticator, clock, tokens
) -> None:
    system = SystemRates(
        requests_per_second=5,
        request_burst=3,
        generations_per_minute=0,
        max_concurrent_generations=0,
    )
    with running_budget(
        database_url, authenticator, clock=clock, admission=admission(free=FREE, system=system)
    ) as budget:
        for user in ("u1", "u2", "u1"):
            admit(budget, tokens, user)
        refusal = admit_refusal(budget, tokens, "u1")
        assert refusal.reason == "SYSTEM_RATE_LIMITED"
        assert refusal.metadata["rule"] == "system_requests"
        assert (refusal.metadata["limit"], refusal.metadata["period_seconds"]) == ("5", "1")
        assert refusal.retry_after == timedelta(milliseconds=200)  # exact, not rounded to 1 s
        assert admit_refusal(budget, tokens, "u3").reason == "SYSTEM_RATE_LIMITED"
        # The refused call rolled back whole: u1's own allowance is as it was.
        limits = budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u1"), metadata=tokens.admin())
        assert rule_of(limits, apb.RATE_RULE_KIND_USER_REQUESTS).remaining == 8
        assert rule_of(limits, apb.RATE_RULE_KIND_SYSTEM_REQUESTS).source == "system"
        clock.advance(timedelta(milliseconds=200))
        admit(budget, tokens, "u3")


def test_a_rule_in_shadow_mode_never_refuses_but_counts(
    database_url, authenticator, clock, tokens
) -> None:
    settings = admission(free=FREE, shadow=frozenset({RuleName.USER_REQUESTS}))
    with running_budget(database_url, authenticator, clock=clock, admission=settings) as budget:
        for _ in range(15):
            admit(budget, tokens)
        counted = budget.app.metrics.registry.get_sample_value(
            "recipeimage_rate_shadow_refusals_total",
            {"service": "budget", "rule": "user_requests"},
        )
        assert counted == 5
        limits = budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u1"), metadata=tokens.admin())
        shown = rule_of(limits, apb.RATE_RULE_KIND_USER_REQUESTS)
        assert shown.shadow
        # Only the 10 a real rule would have admitted moved the TAT.
        assert shown.full_time.ToDatetime().replace(tzinfo=T0.tzinfo) == T0 + timedelta(seconds=30)
    with running_budget(
        database_url, authenticator, clock=clock, admission=admission(free=FREE)
    ) as enforced:
        # Same database, rule enforced: the shadowed calls left no debt beyond the burst.
        clock.advance(timedelta(seconds=3))
        admit(enforced, tokens)
        assert admit_refusal(enforced, tokens).retry_after == timedelta(seconds=3)


def test_every_rule_is_off_when_its_limit_is_zero(
    database_url, authenticator, clock, tokens
) -> None:
    with running_budget(database_url, authenticator, clock=clock) as budget:
        for _ in range(50):
            assert list(admit(budget, tokens).rate_rules) == []
