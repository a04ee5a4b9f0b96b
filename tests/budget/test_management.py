"""Budget management over real gRPC on both databases: tiers, an admin's
overrides, a user's own caps, stored system limits, and the audit log."""

from __future__ import annotations

from datetime import UTC, date, timedelta

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as pb
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from services.common.status import rich_details
from tests.budget.conftest import T0, counters
from tests.support.budget_server import running_budget

TODAY = date(2026, 3, 10)


def refusal(call) -> tuple[grpc.StatusCode, dict]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), {type(d).__name__: d for d in rich_details(raised.value)}


def reserve(budget, tokens, amount: int, key: str, user: str = "u1"):  # type: ignore[no-untyped-def]
    return budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id=user, amount_micros=amount, idempotency_key=key),
        metadata=tokens.service(),
    )


def limits(budget, metadata, user: str = "u1") -> pb.GetLimitsResponse:  # type: ignore[no-untyped-def]
    return budget.stub.GetLimits(pb.GetLimitsRequest(user_id=user), metadata=metadata)


def by_kind(response: pb.GetLimitsResponse) -> dict[int, pb.Window]:
    return {window.kind: window for window in response.windows}


def set_limits(budget, tokens, user: str = "u1", **overrides):  # type: ignore[no-untyped-def]
    return budget.stub.SetUserLimits(
        pb.SetUserLimitsRequest(user_id=user, overrides=pb.LimitValues(**overrides)),
        metadata=tokens.admin(),
    ).settings


def set_cap(budget, metadata, user: str = "", **cap):  # type: ignore[no-untyped-def]
    return budget.stub.SetSpendCap(
        pb.SetSpendCapRequest(user_id=user, spend_cap=pb.LimitValues(**cap)), metadata=metadata
    ).settings


def audit(budget, tokens, **fields) -> pb.ListAuditLogResponse:  # type: ignore[no-untyped-def]
    return budget.stub.ListAuditLog(pb.ListAuditLogRequest(**fields), metadata=tokens.admin())


def test_get_limits_shows_every_window_with_its_rule(budget, tokens) -> None:
    response = limits(budget, tokens.user("u1"))
    assert response.tier == pb.USER_TIER_FREE
    assert (response.per_generation_limit_micros, response.per_generation_limit_source) == (
        80_000,
        "tier:free",
    )
    assert [(w.kind, w.limit_micros, w.limit_source) for w in response.windows] == [
        (pb.WINDOW_KIND_USER_DAILY, 500_000, "tier:free"),
        (pb.WINDOW_KIND_USER_MONTHLY, 5_000_000, "tier:free"),
        (pb.WINDOW_KIND_SYSTEM_DAILY, 50_000_000, "system"),
        (pb.WINDOW_KIND_SYSTEM_MONTHLY, 1_000_000_000, "system"),
    ]
    assert not response.overrides.HasField("daily_micros")
    assert not response.spend_cap.HasField("daily_micros")


def test_set_user_tier_changes_the_limits_and_keeps_overrides(budget, tokens) -> None:
    set_limits(budget, tokens, monthly_micros=7_000_000)
    settings = budget.stub.SetUserTier(
        pb.SetUserTierRequest(user_id="u1", tier=pb.USER_TIER_PRO), metadata=tokens.admin()
    ).settings
    assert settings.tier == pb.USER_TIER_PRO
    assert settings.overrides.monthly_micros == 7_000_000
    windows = by_kind(limits(budget, tokens.service()))
    assert (windows[pb.WINDOW_KIND_USER_DAILY].limit_micros, windows[1].limit_source) == (
        10_000_000,
        "tier:pro",
    )
    assert windows[pb.WINDOW_KIND_USER_MONTHLY].limit_source == "override"
    code, details = refusal(
        lambda: budget.stub.SetUserTier(
            pb.SetUserTierRequest(user_id="u1"), metadata=tokens.admin()
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details["BadRequest"].field_violations] == ["tier"]


def test_overrides_raise_or_lower_a_users_limits_and_reserve_obeys_them(budget, tokens) -> None:
    # Above the free tier: a bigger per-generation limit and day.
    settings = set_limits(budget, tokens, daily_micros=1_000_000, per_generation_micros=150_000)
    assert settings.overrides.daily_micros == 1_000_000
    assert not settings.overrides.HasField("monthly_micros")
    assert reserve(budget, tokens, 150_000, "big").reservation.amount_micros == 150_000
    response = limits(budget, tokens.service())
    assert (response.per_generation_limit_micros, response.per_generation_limit_source) == (
        150_000,
        "override",
    )
    assert by_kind(response)[pb.WINDOW_KIND_USER_DAILY].limit_source == "override"

    # Lowered below what is already held: the next reservation is refused and
    # the refusal names the rule.
    set_limits(budget, tokens, daily_micros=200_000, per_generation_micros=150_000)
    code, details = refusal(lambda: reserve(budget, tokens, 60_000, "more"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details["ErrorInfo"].reason == "DAILY_LIMIT_EXCEEDED"
    assert details["ErrorInfo"].metadata["limit_micros"] == "200000"
    assert details["ErrorInfo"].metadata["limit_source"] == "override"
    assert reserve(budget, tokens, 50_000, "fits").reservation.amount_micros == 50_000

    # Unset fields clear: back to the tier.
    cleared = set_limits(budget, tokens)
    assert not cleared.overrides.HasField("daily_micros")
    assert by_kind(limits(budget, tokens.service()))[1].limit_micros == 500_000
    code, details = refusal(lambda: reserve(budget, tokens, 150_000, "too-big-again"))
    assert details["ErrorInfo"].reason == "PER_GENERATION_LIMIT_EXCEEDED"
    assert details["ErrorInfo"].metadata["limit_source"] == "tier:free"


def test_a_user_caps_itself_below_its_limits_but_never_above(budget, tokens) -> None:
    me = tokens.user("u1")
    settings = set_cap(budget, me, daily_micros=100_000, monthly_micros=99_000_000)
    assert settings.user_id == "u1"
    assert (settings.spend_cap.daily_micros, settings.spend_cap.monthly_micros) == (
        100_000,
        99_000_000,
    )
    response = limits(budget, me)
    windows = by_kind(response)
    assert (windows[1].limit_micros, windows[1].limit_source) == (100_000, "cap")
    # A cap above the tier's monthly 5 USD is stored but raises nothing.
    assert (windows[2].limit_micros, windows[2].limit_source) == (5_000_000, "tier:free")
    assert response.spend_cap.monthly_micros == 99_000_000

    reserve(budget, tokens, 80_000, "a")
    code, details = refusal(lambda: reserve(budget, tokens, 30_000, "b"))
    assert details["ErrorInfo"].reason == "DAILY_LIMIT_EXCEEDED"
    assert details["ErrorInfo"].metadata["limit_source"] == "cap"

    # A cap above an admin's lower override cannot raise it either.
    set_limits(budget, tokens, daily_micros=50_000)
    set_cap(budget, me, daily_micros=400_000)
    assert by_kind(limits(budget, me))[1].limit_micros == 50_000
    # Clearing the cap is allowed: the override applies again.
    set_cap(budget, me)
    assert by_kind(limits(budget, me))[1].limit_source == "override"
    # A per-generation cap of zero stops all spending.
    set_cap(budget, me, per_generation_micros=0)
    code, details = refusal(lambda: reserve(budget, tokens, 1, "c"))
    assert details["ErrorInfo"].reason == "PER_GENERATION_LIMIT_EXCEEDED"
    assert details["ErrorInfo"].metadata["limit_source"] == "cap"


def test_spend_cap_is_a_users_own_business(budget, tokens) -> None:
    code, _ = refusal(lambda: set_cap(budget, tokens.user("u2"), user="u1", daily_micros=1))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    # A service acts for the user it names, and must name one.
    assert set_cap(budget, tokens.service(), user="u1", daily_micros=1).spend_cap.daily_micros == 1
    code, details = refusal(lambda: set_cap(budget, tokens.service(), daily_micros=1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, details = refusal(lambda: set_cap(budget, tokens.user("u1"), monthly_micros=-1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details["BadRequest"].field_violations] == ["spend_cap.monthly_micros"]
    assert by_kind(limits(budget, tokens.user("u1")))[2].limit_source == "tier:free"


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        ("SetUserTier", pb.SetUserTierRequest(user_id="u1", tier=pb.USER_TIER_PRO)),
        ("SetUserLimits", pb.SetUserLimitsRequest(user_id="u1")),
        ("SetSystemLimits", pb.SetSystemLimitsRequest(daily_limit_micros=1)),
        ("ListAuditLog", pb.ListAuditLogRequest()),
        ("ReconcileLedger", pb.ReconcileLedgerRequest()),
    ],
)
def test_admin_rpcs_need_an_admin(budget, tokens, method, request_) -> None:
    for metadata in (tokens.user("u1"), tokens.service()):
        code, _ = refusal(lambda m=metadata: getattr(budget.stub, method)(request_, metadata=m))
        assert code == grpc.StatusCode.PERMISSION_DENIED
    assert audit(budget, tokens).entries == []
    assert by_kind(limits(budget, tokens.service()))[3].limit_source == "system"


def test_system_limits_are_stored_and_enforced_by_every_replica(
    database_url, authenticator, tokens, clock
) -> None:
    with (
        running_budget(database_url, authenticator, clock=clock) as one,
        running_budget(database_url, authenticator, clock=clock) as two,
    ):
        answer = one.stub.SetSystemLimits(
            pb.SetSystemLimitsRequest(daily_limit_micros=100_000), metadata=tokens.admin()
        )
        assert (answer.daily_limit_micros, answer.daily_limit_source) == (
            100_000,
            "system:override",
        )
        assert (answer.monthly_limit_micros, answer.monthly_limit_source) == (
            1_000_000_000,
            "system",
        )
        # The other replica enforces it at once.
        reserve(two, tokens, 80_000, "k1", user="alice")
        code, details = refusal(lambda: reserve(two, tokens, 30_000, "k2", user="bob"))
        assert details["ErrorInfo"].reason == "SYSTEM_DAILY_LIMIT_EXCEEDED"
        assert details["ErrorInfo"].metadata["limit_source"] == "system:override"
        assert details["QuotaFailure"].violations[0].subject == "system"
        windows = by_kind(limits(two, tokens.service(), user="bob"))
        assert (windows[3].limit_micros, windows[3].reserved_micros) == (100_000, 80_000)

    # It outlives the processes; clearing goes back to the configured limit.
    with running_budget(
        database_url, authenticator, clock=clock, system_daily_limit_micros=300_000
    ) as three:
        assert by_kind(limits(three, tokens.service()))[3].limit_micros == 100_000
        three.stub.SetSystemLimits(pb.SetSystemLimitsRequest(), metadata=tokens.admin())
        assert by_kind(limits(three, tokens.service()))[3].limit_micros == 300_000
        assert reserve(three, tokens, 30_000, "k2", user="bob").reservation.amount_micros
        code, _ = refusal(
            lambda: three.stub.SetSystemLimits(
                pb.SetSystemLimitsRequest(monthly_limit_micros=-5), metadata=tokens.admin()
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert counters(three, "system", "day", TODAY).reserved_micros == 110_000


def test_every_change_is_audited_with_who_what_before_after_and_when(budget, tokens, clock) -> None:
    budget.stub.SetUserTier(
        pb.SetUserTierRequest(user_id="u1", tier=pb.USER_TIER_PREMIUM), metadata=tokens.admin("ops")
    )
    clock.advance(timedelta(minutes=1))
    set_limits(budget, tokens, daily_micros=3_000_000)
    clock.advance(timedelta(minutes=1))
    set_cap(budget, tokens.user("u1"), daily_micros=1_000_000)
    set_cap(budget, tokens.user("u1"), daily_micros=1_000_000)  # no change: no entry
    clock.advance(timedelta(minutes=1))
    budget.stub.SetSystemLimits(
        pb.SetSystemLimitsRequest(monthly_limit_micros=2_000_000_000), metadata=tokens.admin("cfo")
    )

    entries = audit(budget, tokens).entries
    assert [e.action for e in entries] == [
        pb.AUDIT_ACTION_SET_SYSTEM_LIMITS,
        pb.AUDIT_ACTION_SET_SPEND_CAP,
        pb.AUDIT_ACTION_SET_USER_LIMITS,
        pb.AUDIT_ACTION_SET_USER_TIER,
    ]
    system, cap, override, tier = entries
    assert (system.actor, system.actor_role, system.target_user_id) == ("cfo", "admin", "")
    assert not system.before.system_limits.HasField("monthly_micros")
    assert system.after.system_limits.monthly_micros == 2_000_000_000
    assert system.create_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=3)

    assert (cap.actor, cap.actor_role, cap.target_user_id) == ("u1", "user", "u1")
    assert not cap.before.spend_cap.HasField("daily_micros")
    assert cap.after.spend_cap.daily_micros == 1_000_000
    assert cap.after.overrides.daily_micros == 3_000_000  # the whole stored state

    assert override.before.tier == override.after.tier == pb.USER_TIER_PREMIUM
    assert override.after.overrides.daily_micros == 3_000_000
    assert (tier.actor, tier.before.tier, tier.after.tier) == (
        "ops",
        pb.USER_TIER_UNSPECIFIED,
        pb.USER_TIER_PREMIUM,
    )
    assert tier.create_time.ToDatetime(tzinfo=UTC) == T0
    assert len({e.entry_id for e in entries}) == 4


def test_the_audit_log_pages_newest_first_and_filters_by_user(budget, tokens) -> None:
    for number in range(7):
        set_limits(budget, tokens, user="alice", daily_micros=1_000 + number)
        set_limits(budget, tokens, user="bob", daily_micros=1_000 + number)

    seen: list[int] = []
    token = ""
    pages = 0
    while True:
        page = audit(budget, tokens, target_user_id="alice", page_size=3, page_token=token)
        assert len(page.entries) <= 3
        assert {e.target_user_id for e in page.entries} == {"alice"}
        seen += [e.after.overrides.daily_micros for e in page.entries]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == [1_006 - n for n in range(7)]
    assert len(audit(budget, tokens).entries) == 14  # the default page size holds all

    # A token is bound to the request it was issued for, and must be ours.
    first = audit(budget, tokens, target_user_id="alice", page_size=2)
    for bad in (
        {"target_user_id": "bob", "page_token": first.next_page_token},
        {"page_token": "not-a-token"},
        {"page_size": -1},
    ):
        code, details = refusal(lambda b=bad: audit(budget, tokens, **b))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details["BadRequest"].field_violations[0].field in ("page_token", "page_size")


def test_the_audit_log_is_append_only_in_the_database(budget, tokens) -> None:
    set_limits(budget, tokens, daily_micros=1)
    for statement in ("UPDATE budget_audit_log SET actor = 'x'", "DELETE FROM budget_audit_log"):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            budget.app.sessions.begin() as session,
        ):
            session.execute(text(statement))
    assert audit(budget, tokens).entries[0].actor == "ops"
