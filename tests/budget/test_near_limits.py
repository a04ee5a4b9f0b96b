"""ListUsersNearLimits: users at or above a share of an effective limit of
their current day or month (tier, override, cap, credit; spent + reserved),
fullest first, paged; admin only; bad input."""

from __future__ import annotations

from datetime import timedelta

from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import management_tools_pb2 as tpb

from tests.budget.conftest import T0
from tests.budget.tools_support import bad_fields, grant, only_admins, reserve, spend


def near(budget, tokens, share: int, page_size: int = 0, token: str = ""):  # type: ignore[no-untyped-def]
    return budget.stub.ListUsersNearLimits(
        tpb.ListUsersNearLimitsRequest(
            min_share_basis_points=share, page_size=page_size, page_token=token
        ),
        metadata=tokens.admin(),
    )


def rows(response) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [
        (
            u.user_id,
            u.window,
            u.share_basis_points,
            u.spent_micros,
            u.reserved_micros,
            u.effective_limit_micros,
            u.credit_micros,
        )
        for u in response.users
    ]


def build_users(budget, tokens, clock) -> None:  # type: ignore[no-untyped-def]
    admin = tokens.admin()
    # u5: 95% of an overridden month, spent yesterday (nothing today).
    budget.stub.SetUserLimits(
        pb.SetUserLimitsRequest(user_id="u5", overrides=pb.LimitValues(monthly_micros=100_000)),
        metadata=admin,
    )
    # u6: a full day yesterday, little of the month.
    clock.set(T0 - timedelta(days=1))
    spend(budget, tokens, 47_500, "a", "u5")
    spend(budget, tokens, 47_500, "b", "u5")
    for number in range(6):
        spend(budget, tokens, 80_000, f"y{number}", "u6")
    clock.set(T0)
    # u1: 80% of the free tier's day.
    for number in range(5):
        spend(budget, tokens, 80_000, f"d{number}", "u1")
    # u2: 90% of an overridden day.
    budget.stub.SetUserLimits(
        pb.SetUserLimitsRequest(user_id="u2", overrides=pb.LimitValues(daily_micros=100_000)),
        metadata=admin,
    )
    spend(budget, tokens, 45_000, "a", "u2")
    spend(budget, tokens, 45_000, "b", "u2")
    # u3: 96% of its tier's day, but a credit doubles the day: 48%.
    grant(budget, tokens, 500_000, user="u3")
    for number in range(6):
        spend(budget, tokens, 80_000, f"c{number}", "u3")
    # u4: its own cap of 100,000, 80% held, nothing committed.
    budget.stub.SetSpendCap(
        pb.SetSpendCapRequest(spend_cap=pb.LimitValues(daily_micros=100_000)),
        metadata=tokens.user("u4"),
    )
    reserve(budget, tokens, 80_000, "held", "u4")


def test_users_near_their_limits_fullest_first(budget, tokens, clock) -> None:
    build_users(budget, tokens, clock)
    daily, monthly = tpb.LIMIT_WINDOW_USER_DAILY, tpb.LIMIT_WINDOW_USER_MONTHLY
    assert rows(near(budget, tokens, 8000)) == [
        ("u5", monthly, 9500, 95_000, 0, 100_000, 0),
        ("u2", daily, 9000, 90_000, 0, 100_000, 0),
        ("u1", daily, 8000, 400_000, 0, 500_000, 0),
        ("u4", daily, 8000, 0, 80_000, 100_000, 0),
    ]
    lower = rows(near(budget, tokens, 4800))
    assert lower[-1] == ("u3", daily, 4800, 480_000, 0, 1_000_000, 500_000)
    assert [row[0] for row in lower] == ["u5", "u2", "u1", "u4", "u3"]
    assert rows(near(budget, tokens, 9501)) == []
    assert near(budget, tokens, 1).users[0].tier == tpb.TIER_NAME_FREE
    # On pro (10,000,000 a day), u1's 400,000 is 4% of its day.
    budget.set_tier("u1", "pro")
    assert "u1" not in [row[0] for row in rows(near(budget, tokens, 8000))]
    u1 = next(u for u in near(budget, tokens, 400).users if u.user_id == "u1")
    assert (u1.tier, u1.share_basis_points, u1.effective_limit_micros) == (
        tpb.TIER_NAME_PRO,
        400,
        10_000_000,
    )


def test_pages_follow_the_share_order(budget, tokens, clock) -> None:
    build_users(budget, tokens, clock)
    first = near(budget, tokens, 8000, page_size=2)
    assert [u.user_id for u in first.users] == ["u5", "u2"]
    second = near(budget, tokens, 8000, page_size=2, token=first.next_page_token)
    assert [u.user_id for u in second.users] == ["u1", "u4"]
    assert second.next_page_token == ""
    # A token is bound to the share it was issued for.
    assert bad_fields(lambda: near(budget, tokens, 7000, token=first.next_page_token)) == [
        "page_token"
    ]


def test_bad_input_and_access(budget, tokens) -> None:
    for share in (0, -1, 1_000_001):
        assert bad_fields(lambda share=share: near(budget, tokens, share)) == [
            "min_share_basis_points"
        ]
    assert bad_fields(lambda: near(budget, tokens, 8000, page_size=-1)) == ["page_size"]
    assert bad_fields(lambda: near(budget, tokens, 8000, token="forged")) == ["page_token"]
    request = tpb.ListUsersNearLimitsRequest(min_share_basis_points=8000)
    only_admins(
        tokens, lambda metadata: budget.stub.ListUsersNearLimits(request, metadata=metadata)
    )
