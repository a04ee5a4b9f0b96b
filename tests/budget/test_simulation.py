"""SimulateLimits against a ledger whose replay is computed by hand (the
README's definition): refusals by reason, users, spend avoided, per tier and
in total; admin only; bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import management_tools_pb2 as tpb

from services.budget.domain.limits import LimitValues, Tier, TierLimits
from services.budget.domain.simulation import Proposal, Replay, ReplayedRecord
from services.budget.domain.usage import Outcome, Usage, completed
from services.budget.store.usage import UsageStore
from services.common.db import dialect_name
from services.common.timestamps import to_proto
from tests.budget.tools_support import bad_fields, only_admins

START, END = datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC)
GENERATED, HIT = Outcome.GENERATED, Outcome.CACHE_HIT_EXACT
# (day, "hh:mm", user, cost, outcome); proposal: free per generation 60,000
# and daily 100,000; premium daily 150,000; system daily 300,000. u3 (free)
# has an override of its daily limit: 150,000.
LEDGER = [
    (8, "23:59", "u1", 80_000, GENERATED),  # before the range
    (9, "09:00", "u1", 40_000, GENERATED),  # ok: u1 40, system 40
    (9, "09:10", "u1", 70_000, GENERATED),  # refused: per generation
    (9, "09:20", "u1", 50_000, GENERATED),  # ok: u1 90, system 90
    (9, "09:30", "u1", 20_000, GENERATED),  # refused: daily (110 > 100)
    (9, "09:40", "u1", 0, HIT),  # costs nothing, never refused
    (9, "10:00", "u2", 100_000, GENERATED),  # ok: u2 100, system 190
    (9, "10:10", "u2", 100_000, GENERATED),  # refused: daily (200 > 150)
    (9, "10:20", "u3", 60_000, GENERATED),  # ok: u3 60, system 250
    (9, "10:30", "u3", 60_000, GENERATED),  # refused: system daily (310 > 300)
    (9, "10:40", "u3", 60_000, GENERATED),  # refused: system daily again
    (9, "11:00", "u2", 50_000, GENERATED),  # ok: u2 150, system 300
    (9, "11:10", "u2", 50_000, GENERATED),  # refused: daily (the user's first)
    (10, "08:00", "u1", 50_000, GENERATED),  # a new day: ok
    (10, "08:10", "u2", 100_000, GENERATED),  # ok
    (11, "00:00", "u1", 80_000, GENERATED),  # after the range
]


def store_ledger(budget) -> None:  # type: ignore[no-untyped-def]
    with budget.app.sessions.begin() as session:
        store = UsageStore(session, dialect_name(session))
        for number, (day, clock, user, cost, outcome) in enumerate(LEDGER):
            hour, minute = map(int, clock.split(":"))
            store.store_usage(
                completed(
                    Usage(),
                    default_outcome=outcome,
                    created_at=datetime(2026, 3, day, hour, minute, tzinfo=UTC),
                    request_id=f"r{number}",
                    user_id=user,
                    cost_micros=cost,
                )
            )


def simulate(budget, tokens, **fields):  # type: ignore[no-untyped-def]
    request = tpb.SimulateLimitsRequest(
        start_time=to_proto(START), end_time=to_proto(END), **fields
    )
    return budget.stub.SimulateLimits(request, metadata=tokens.admin())


PROPOSAL = {
    "tiers": [
        tpb.ProposedTierLimits(
            tier=tpb.TIER_NAME_FREE, per_generation_micros=60_000, daily_micros=100_000
        ),
        tpb.ProposedTierLimits(tier=tpb.TIER_NAME_PREMIUM, daily_micros=150_000),
    ],
    "system_daily_micros": 300_000,
}


def summary(result: tpb.SimulationResult) -> tuple:
    return (
        result.requests,
        result.users,
        result.refused_requests,
        result.refused_users,
        result.actual_spend_micros,
        result.allowed_spend_micros,
        result.avoided_spend_micros,
        [(r.reason, r.requests, r.users, r.cost_micros) for r in result.refusals],
    )


def test_the_replay_matches_the_hand_computed_case(budget, tokens) -> None:
    store_ledger(budget)
    budget.set_tier("u2", "premium")
    budget.stub.SetUserLimits(
        pb.SetUserLimitsRequest(user_id="u3", overrides=pb.LimitValues(daily_micros=150_000)),
        metadata=tokens.admin(),
    )
    response = simulate(budget, tokens, **PROPOSAL)
    free, premium, pro = response.tiers
    assert (free.tier, free.per_generation_micros, free.daily_micros, free.monthly_micros) == (
        tpb.TIER_NAME_FREE,
        60_000,
        100_000,
        5_000_000,
    )
    assert summary(free) == (
        9,
        2,
        4,
        2,
        410_000,
        200_000,
        210_000,
        [
            ("PER_GENERATION_LIMIT_EXCEEDED", 1, 1, 70_000),
            ("DAILY_LIMIT_EXCEEDED", 1, 1, 20_000),
            ("SYSTEM_DAILY_LIMIT_EXCEEDED", 2, 1, 120_000),
        ],
    )
    assert (premium.tier, premium.daily_micros, premium.per_generation_micros) == (
        tpb.TIER_NAME_PREMIUM,
        150_000,
        120_000,
    )
    assert summary(premium) == (
        5,
        1,
        2,
        1,
        400_000,
        250_000,
        150_000,
        [("DAILY_LIMIT_EXCEEDED", 2, 1, 150_000)],
    )
    assert (pro.tier, summary(pro)) == (tpb.TIER_NAME_PRO, (0, 0, 0, 0, 0, 0, 0, []))
    assert summary(response.total) == (
        14,
        3,
        6,
        3,
        810_000,
        450_000,
        360_000,
        [
            ("PER_GENERATION_LIMIT_EXCEEDED", 1, 1, 70_000),
            ("DAILY_LIMIT_EXCEEDED", 3, 2, 170_000),
            ("SYSTEM_DAILY_LIMIT_EXCEEDED", 2, 1, 120_000),
        ],
    )


def test_without_a_proposal_the_configured_limits_apply(budget, tokens) -> None:
    """Everyone on free (no tier stored): only u2's three images of 100,000
    are above free's 80,000 per generation; no day reaches 500,000."""
    store_ledger(budget)
    response = simulate(budget, tokens)
    assert summary(response.total) == (
        14,
        3,
        3,
        1,
        810_000,
        510_000,
        300_000,
        [("PER_GENERATION_LIMIT_EXCEEDED", 3, 1, 300_000)],
    )
    assert response.tiers[0].daily_micros == 500_000


def test_bad_input_and_access(budget, tokens) -> None:
    def call(**fields):  # type: ignore[no-untyped-def]
        return lambda: budget.stub.SimulateLimits(
            tpb.SimulateLimitsRequest(**fields), metadata=tokens.admin()
        )

    assert bad_fields(call()) == ["end_time", "start_time"]
    assert bad_fields(call(start_time=to_proto(END), end_time=to_proto(START))) == ["end_time"]
    assert bad_fields(
        call(start_time=to_proto(START), end_time=to_proto(datetime(2027, 3, 11, tzinfo=UTC)))
    ) == ["end_time"]
    free = tpb.ProposedTierLimits(tier=tpb.TIER_NAME_FREE)
    assert bad_fields(
        call(
            start_time=to_proto(START),
            end_time=to_proto(END),
            tiers=[free, free, tpb.ProposedTierLimits(daily_micros=-1)],
            system_monthly_micros=-1,
        )
    ) == ["system_monthly_micros", "tiers[1].tier", "tiers[2].daily_micros", "tiers[2].tier"]
    request = tpb.SimulateLimitsRequest(start_time=to_proto(START), end_time=to_proto(END))
    only_admins(tokens, lambda metadata: budget.stub.SimulateLimits(request, metadata=metadata))


def test_the_month_and_the_system_month_carry_over_days() -> None:
    """The replay itself: a month's spend carries across days (a day's does
    not), and the system's month counts every user's allowed spend."""
    limits = {tier: TierLimits(100_000, 150_000, 100_000) for tier in Tier}
    replay = Replay(Proposal(limits, system_monthly_micros=250_000), ZoneInfo("UTC"))

    def add(day: int, user: str, cost: int) -> None:
        replay.add(
            ReplayedRecord(
                user_id=user,
                created_at=datetime(2026, 3, day, 12, tzinfo=UTC),
                cost_micros=cost,
                tier=Tier.FREE,
                overrides=LimitValues(),
                cap=LimitValues(),
            )
        )

    add(1, "u1", 100_000)  # ok: u1 month 100, system 100
    add(2, "u1", 60_000)  # refused: month (160 > 150), though the day is new
    add(2, "u2", 100_000)  # ok: system 200
    add(3, "u3", 60_000)  # refused: system month (260 > 250)
    add(3, "u1", 50_000)  # ok: u1 month 150, system 250
    total = replay.total
    assert {reason: tally.requests for reason, tally in total.refusals.items()} == {
        "MONTHLY_LIMIT_EXCEEDED": 1,
        "SYSTEM_MONTHLY_LIMIT_EXCEEDED": 1,
    }
    assert (total.allowed_spend_micros, total.avoided_spend_micros) == (250_000, 120_000)
    assert total.refused_users == {"u1", "u3"}
