"""CheckBudget with include_admission (issue 11, quotes): Admit's and
ReserveBudget's verdicts, peeked without taking anything, are the refusals
the two RPCs then answer with (code, reason, metadata, RetryInfo); shadow
rules never refuse; and a check takes no quota, slot or money."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from recipeimage.budget.v1 import admission_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.domain.admission import RuleName, SystemRates, TierRates
from tests.budget.admission_support import (
    Refusal,
    admit,
    admit_refusal,
    reserve,
    reserve_refusal,
)
from tests.support.budget_server import admission, running_budget


def check(budget, tokens, amount: int = 10_000, user: str = "u1") -> pb.CheckBudgetResponse:  # type: ignore[no-untyped-def]
    return budget.stub.CheckBudget(
        pb.CheckBudgetRequest(user_id=user, amount_micros=amount, include_admission=True),
        metadata=tokens.service(),
    )


def as_refusal(message: apb.Refusal) -> Refusal:
    delay = message.retry_delay.ToTimedelta() if message.HasField("retry_delay") else None
    return Refusal(_code(message.code), message.reason, dict(message.metadata), delay)


def _code(name: str) -> grpc.StatusCode:
    return grpc.StatusCode[name]


@pytest.fixture
def limited(database_url, authenticator, clock):  # type: ignore[no-untyped-def]
    rates = admission(TierRates(6, 2, 2, 1), system=SystemRates(0, 0, 0, 3))
    with running_budget(database_url, authenticator, clock, admission=rates) as budget:
        yield budget


def test_an_admitted_call_has_no_refusal_and_the_per_generation_limit(budget, tokens) -> None:
    checked = check(budget, tokens)
    assert checked.allowed and checked.reason == ""
    assert checked.per_generation_limit_micros == 80_000
    assert checked.per_generation_limit_source == "tier:free"
    for name in ("admit_refusal", "reserve_refusal", "generation_refusal"):
        assert not checked.HasField(name)  # type: ignore[arg-type]
    plain = budget.stub.CheckBudget(
        pb.CheckBudgetRequest(user_id="u1", amount_micros=90_000), metadata=tokens.service()
    )
    assert plain.reason == "PER_GENERATION_LIMIT_EXCEEDED"
    assert not plain.HasField("reserve_refusal")  # only when admission is asked for


def test_the_request_rate_is_peeked_without_taking(limited, tokens, clock) -> None:
    for _ in range(5):
        assert not check(limited, tokens).HasField("admit_refusal")
    admit(limited, tokens)
    admit(limited, tokens)  # the burst of 2: the checks took nothing
    peeked = as_refusal(check(limited, tokens).admit_refusal)
    assert peeked == admit_refusal(limited, tokens)
    assert peeked.reason == "RATE_LIMITED" and peeked.retry_after == timedelta(seconds=10)


def test_generation_rates_and_caps_are_peeked_in_reserve_order(limited, tokens) -> None:
    reserve(limited, tokens, "k1")
    checked = check(limited, tokens)  # the user's cap of 1 is full
    assert as_refusal(checked.generation_refusal) == as_refusal(checked.reserve_refusal)
    assert as_refusal(checked.reserve_refusal) == reserve_refusal(limited, tokens, "k2")
    assert checked.reserve_refusal.reason == "CONCURRENCY_LIMIT_EXCEEDED"
    # Over the per-generation limit too: that refusal comes first, as in ReserveBudget.
    over = check(limited, tokens, amount=90_000)
    assert over.reserve_refusal.reason == "PER_GENERATION_LIMIT_EXCEEDED"
    assert over.generation_refusal.reason == "CONCURRENCY_LIMIT_EXCEEDED"
    assert as_refusal(over.reserve_refusal) == reserve_refusal(limited, tokens, "k3", amount=90_000)


def test_a_window_refusal_is_peeked_with_its_metadata(budget, tokens) -> None:
    budget.stub.SetSystemLimits(
        pb.SetSystemLimitsRequest(daily_limit_micros=5_000), metadata=tokens.admin()
    )
    checked = check(budget, tokens)
    assert checked.reason == "SYSTEM_DAILY_LIMIT_EXCEEDED"
    assert as_refusal(checked.reserve_refusal) == reserve_refusal(budget, tokens, "k1")


def test_a_shadowed_rule_never_refuses_a_check(database_url, authenticator, clock, tokens) -> None:
    rates = admission(TierRates(6, 1, 0, 0), shadow=frozenset({RuleName.USER_REQUESTS}))
    with running_budget(database_url, authenticator, clock, admission=rates) as budget:
        admit(budget, tokens)
        admit(budget, tokens)  # would refuse: counted, not enforced
        assert not check(budget, tokens).HasField("admit_refusal")


def test_a_block_is_peeked(budget, tokens, clock) -> None:
    request = pb.BlockUserRequest(user_id="u1", reason="scraping")
    request.expire_time.FromDatetime(clock.now() + timedelta(hours=2))
    budget.stub.BlockUser(request, metadata=tokens.admin())
    peeked = as_refusal(check(budget, tokens).admit_refusal)
    assert peeked == admit_refusal(budget, tokens)
    assert peeked.reason == "USER_BLOCKED" and peeked.retry_after == timedelta(hours=2)
