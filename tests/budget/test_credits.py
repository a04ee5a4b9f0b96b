"""GrantCredit: a credit raises its window's effective limit in GetLimits,
CheckBudget and ReserveBudget (exactly, under concurrency), stops counting
when it expires, is audited and reconciled; admin only; bad input writes
nothing."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import grpc
from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import management_tools_pb2 as tpb
from sqlalchemy import func, select, text

from services.budget.domain.limits import TierLimits
from services.budget.store.models import AuditRow, CreditRow
from services.common.timestamps import to_proto
from tests.budget.conftest import T0, counters
from tests.budget.test_concurrency import race
from tests.budget.tools_support import (
    bad_fields,
    grant,
    only_admins,
    refusal,
    reserve,
    spend,
    windows,
)
from tests.support.budget_server import running_budget, tiers

TODAY = date(2026, 3, 10)
DAY_END = T0.replace(hour=0) + timedelta(days=1)  # the service's zone is UTC


def test_a_credit_raises_the_window_in_get_limits_and_is_audited(budget, tokens) -> None:
    credit = grant(budget, tokens, 300_000)
    assert (credit.user_id, credit.window, credit.amount_micros) == (
        "u1",
        tpb.LIMIT_WINDOW_USER_DAILY,
        300_000,
    )
    assert credit.expire_time == to_proto(DAY_END)  # default: the window's reset
    assert (credit.created_by, credit.active) == ("ops", True)
    spend(budget, tokens, 80_000, "a")
    daily = windows(budget, tokens)[pb.WINDOW_KIND_USER_DAILY]
    assert (daily.limit_micros, daily.credit_micros, daily.effective_limit_micros) == (
        500_000,
        300_000,
        800_000,
    )
    assert daily.remaining_micros == 720_000
    monthly = windows(budget, tokens)[pb.WINDOW_KIND_USER_MONTHLY]
    assert (monthly.credit_micros, monthly.effective_limit_micros) == (0, 5_000_000)
    shown = budget.stub.GetLimits(pb.GetLimitsRequest(), metadata=tokens.user("u1")).credits
    assert [(c.credit_id, c.reason, c.active) for c in shown] == [
        (credit.credit_id, "support ticket 42", True)
    ]
    assert (
        list(
            budget.stub.GetLimits(
                pb.GetLimitsRequest(user_id="u2"), metadata=tokens.admin()
            ).credits
        )
        == []
    )

    entry = budget.stub.ListAuditLog(
        pb.ListAuditLogRequest(target_user_id="u1"), metadata=tokens.admin()
    ).entries[0]
    assert (entry.action, entry.actor) == (pb.AUDIT_ACTION_GRANT_CREDIT, "ops")
    assert entry.after.credit == credit
    assert not entry.before.HasField("credit")


def test_reservations_race_for_exactly_the_limit_plus_the_credit(
    database_url, authenticator, tokens, clock
) -> None:
    amount = 30_000
    # Room for 3 and a bit; the credit makes room for exactly 4 more.
    limits = tiers(free=TierLimits(3 * amount + amount - 1, 10_000_000, amount))
    with running_budget(database_url, authenticator, clock=clock, tiers=limits) as budget:
        grant(budget, tokens, 4 * amount)
        results = race(
            20,
            lambda n: reserve(budget, tokens, amount, f"k{n}"),
        )
        granted = [r for r in results if isinstance(r, pb.ReserveBudgetResponse)]
        refused = Counter(r for r in results if not isinstance(r, pb.ReserveBudgetResponse))
        assert len(granted) == 7
        assert refused == {grpc.StatusCode.RESOURCE_EXHAUSTED: 13}
        assert counters(budget, "user", "day", TODAY, "u1").reserved_micros == 7 * amount
        check = budget.stub.CheckBudget(
            pb.CheckBudgetRequest(user_id="u1", amount_micros=amount - 1), metadata=tokens.admin()
        )
        assert (check.allowed, check.reason) == (True, "")
        check = budget.stub.CheckBudget(
            pb.CheckBudgetRequest(user_id="u1", amount_micros=amount), metadata=tokens.admin()
        )
        assert (check.allowed, check.reason) == (False, "DAILY_LIMIT_EXCEEDED")
        reconciled = budget.stub.ReconcileLedger(
            pb.ReconcileLedgerRequest(), metadata=tokens.admin()
        )
        assert reconciled.consistent, reconciled.differences


def test_a_credit_lets_a_window_with_a_zero_limit_hold_and_names_itself_in_refusals(
    budget, tokens
) -> None:
    budget.stub.SetUserLimits(
        pb.SetUserLimitsRequest(user_id="u1", overrides=pb.LimitValues(daily_micros=0)),
        metadata=tokens.admin(),
    )
    code, details = refusal(lambda: reserve(budget, tokens, 50_000, "before"))
    assert details["ErrorInfo"].reason == "DAILY_LIMIT_EXCEEDED"
    grant(budget, tokens, 100_000)
    spend(budget, tokens, 50_000, "a")
    reserve(budget, tokens, 50_000, "b")
    code, details = refusal(lambda: reserve(budget, tokens, 1, "c"))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details["ErrorInfo"].reason == "DAILY_LIMIT_EXCEEDED"
    metadata = details["ErrorInfo"].metadata
    assert (metadata["limit_micros"], metadata["credit_micros"]) == ("100000", "100000")
    assert metadata["limit_source"] == "override"


def test_an_expired_credit_stops_counting_at_its_expiry(budget, tokens, clock) -> None:
    grant(budget, tokens, 100_000, expires=T0 + timedelta(hours=1))
    grant(budget, tokens, 50_000, reason="second")  # until the day ends
    for number in range(6):
        spend(budget, tokens, 80_000, f"s{number}")  # 480,000 of 500,000
    spend(budget, tokens, 80_000, "on-credit")  # 560,000: within 650,000
    clock.set(T0 + timedelta(hours=1))  # the first credit has expired
    daily = windows(budget, tokens)[pb.WINDOW_KIND_USER_DAILY]
    assert (daily.credit_micros, daily.effective_limit_micros) == (50_000, 550_000)
    assert daily.remaining_micros == 0
    code, details = refusal(lambda: reserve(budget, tokens, 1, "after-expiry"))
    assert details["ErrorInfo"].metadata["limit_micros"] == "550000"
    credits = budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u1"), metadata=tokens.admin())
    assert [c.active for c in credits.credits] == [False, True]
    # A new day starts without the old day's credits.
    clock.set(DAY_END)
    daily = windows(budget, tokens)[pb.WINDOW_KIND_USER_DAILY]
    assert (daily.credit_micros, daily.spent_micros) == (0, 0)
    assert list(credits.credits) and not list(
        budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u1"), metadata=tokens.admin()).credits
    )


def test_a_system_credit_raises_the_system_window(
    database_url, authenticator, tokens, clock
) -> None:
    with running_budget(
        database_url, authenticator, clock=clock, system_daily_limit_micros=100_000
    ) as budget:
        spend(budget, tokens, 80_000, "a")
        code, details = refusal(lambda: reserve(budget, tokens, 80_000, "b", user="u2"))
        assert details["ErrorInfo"].reason == "SYSTEM_DAILY_LIMIT_EXCEEDED"
        credit = grant(budget, tokens, 60_000, window=tpb.LIMIT_WINDOW_SYSTEM_DAILY, user="")
        assert credit.user_id == ""
        reserve(budget, tokens, 80_000, "b", user="u2")
        system = windows(budget, tokens, "u2")[pb.WINDOW_KIND_SYSTEM_DAILY]
        assert (system.credit_micros, system.effective_limit_micros) == (60_000, 160_000)


def test_reconciliation_checks_the_credited_amount_of_every_window(budget, tokens) -> None:
    grant(budget, tokens, 100_000)
    grant(budget, tokens, 20_000, window=tpb.LIMIT_WINDOW_USER_MONTHLY)
    spend(budget, tokens, 80_000, "a")
    reconciled = budget.stub.ReconcileLedger(pb.ReconcileLedgerRequest(), metadata=tokens.admin())
    assert reconciled.consistent, reconciled.differences
    with budget.app.sessions.begin() as session:
        session.execute(
            text(
                "UPDATE budget_windows SET credit_micros = 1 WHERE scope = 'user' AND kind = 'day'"
            )
        )
    reconciled = budget.stub.ReconcileLedger(pb.ReconcileLedgerRequest(), metadata=tokens.admin())
    assert not reconciled.consistent
    assert [
        (d.field, d.user_id, d.window_kind, d.counter_micros, d.ledger_micros)
        for d in reconciled.differences
    ] == [("credit_micros", "u1", pb.WINDOW_KIND_USER_DAILY, 1, 100_000)]


def test_grant_credit_refuses_bad_input_and_writes_nothing(budget, tokens, clock) -> None:
    def call(**fields):  # type: ignore[no-untyped-def]
        expires = fields.pop("expires", None)
        request = tpb.GrantCreditRequest(**fields)
        if expires is not None:
            request.expire_time.CopyFrom(to_proto(expires))
        return lambda: budget.stub.GrantCredit(request, metadata=tokens.admin())

    assert bad_fields(call(user_id="u1", amount_micros=1, reason="r")) == ["window"]
    assert bad_fields(call(window=tpb.LIMIT_WINDOW_USER_DAILY, amount_micros=1, reason="r")) == [
        "user_id"
    ]
    assert bad_fields(
        call(user_id="u1", window=tpb.LIMIT_WINDOW_SYSTEM_DAILY, amount_micros=1, reason="r")
    ) == ["user_id"]
    assert bad_fields(call(user_id="u1", window=tpb.LIMIT_WINDOW_USER_DAILY, amount_micros=0)) == [
        "amount_micros",
        "reason",
    ]
    assert bad_fields(call(user_id="u1", window=1, amount_micros=1, reason="x" * 501)) == ["reason"]
    for expires in (T0, T0 - timedelta(hours=1), DAY_END + timedelta(microseconds=1)):
        assert bad_fields(
            call(user_id="u1", window=1, amount_micros=1, reason="r", expires=expires)
        ) == ["expire_time"]
    # The month's window may run to the month's end.
    grant(budget, tokens, 1, window=tpb.LIMIT_WINDOW_USER_MONTHLY, expires=T0 + timedelta(days=5))
    with budget.app.sessions.begin() as session:
        assert session.scalar(select(func.count()).select_from(CreditRow)) == 1
        assert session.scalar(select(func.count()).select_from(AuditRow)) == 1


def test_only_admins_grant_credits(budget, tokens) -> None:
    request = tpb.GrantCreditRequest(
        user_id="u1", window=tpb.LIMIT_WINDOW_USER_DAILY, amount_micros=1, reason="r"
    )
    only_admins(tokens, lambda metadata: budget.stub.GrantCredit(request, metadata=metadata))
    assert windows(budget, tokens)[pb.WINDOW_KIND_USER_DAILY].credit_micros == 1
