"""Threshold alerts over real gRPC on SQLite and PostgreSQL: raised in the
commit or limit change that crosses them, once each; who may read and
silence them; GetLimits' warnings."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from recipeimage.budget.v1 import alerts_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.domain.limits import TierLimits
from tests.budget.alerts_support import alerts, commit, reserve, rules_of, spend
from tests.budget.conftest import T0
from tests.budget.tools_support import grant
from tests.support.budget_server import running_budget, tiers

# Free users may spend 0.10 USD a day and 1 USD a month, 0.10 at once.
SMALL = tiers(free=TierLimits(100_000, 1_000_000, 100_000))


@pytest.fixture
def budget(database_url, authenticator, clock):  # type: ignore[no-untyped-def]
    with running_budget(database_url, authenticator, clock=clock, tiers=SMALL) as running:
        yield running


def code_of(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


def test_each_threshold_fires_once_in_the_commit_that_crosses_it(budget, tokens) -> None:
    spend(budget, tokens, 40_000)
    assert alerts(budget, tokens.admin()) == []
    spend(budget, tokens, 10_000)  # 50%
    spend(budget, tokens, 10_000)  # 60%: nothing new
    spend(budget, tokens, 30_000)  # 90%: past 80
    spend(budget, tokens, 10_000)  # 100%
    found = alerts(budget, tokens.admin())
    assert [(a.rule, a.severity, a.window) for a in found] == [
        ("user_limit_100", apb.ALERT_SEVERITY_CRITICAL, apb.ALERT_WINDOW_DAILY),
        ("user_limit_80", apb.ALERT_SEVERITY_WARNING, apb.ALERT_WINDOW_DAILY),
        ("user_limit_50", apb.ALERT_SEVERITY_INFO, apb.ALERT_WINDOW_DAILY),
    ]
    latest = found[0]
    assert latest.user_id == "u1" and not latest.system and not latest.silenced
    assert latest.period_key == "2026-03-10"
    assert (
        latest.message
        == "user u1 daily budget reached 100% of its limit: spent 0.10 USD of 0.10 USD"
    )
    assert latest.details["spent_micros"] == "100000"
    assert latest.raise_time.ToDatetime() == T0.replace(tzinfo=None)


def test_a_jump_over_several_thresholds_raises_only_the_highest(budget, tokens) -> None:
    spend(budget, tokens, 90_000)
    assert rules_of(alerts(budget, tokens.admin())) == [("user_limit_80", "u1")]


def test_a_new_day_is_a_new_window(budget, tokens, clock) -> None:
    spend(budget, tokens, 50_000)
    clock.advance(timedelta(days=1))
    spend(budget, tokens, 50_000)
    found = alerts(budget, tokens.admin())
    assert [(a.rule, a.window, a.period_key) for a in found] == [
        ("user_limit_50", apb.ALERT_WINDOW_DAILY, "2026-03-11"),
        ("user_limit_50", apb.ALERT_WINDOW_DAILY, "2026-03-10"),
    ]


def test_a_lowered_limit_raises_what_it_crosses_and_later_commits_judge_by_it(
    budget, tokens
) -> None:
    spend(budget, tokens, 30_000)
    held = reserve(budget, tokens, 20_000)
    # The user caps its day at 0.06 USD: 30k is 50% of it.
    budget.stub.SetSpendCap(
        pb.SetSpendCapRequest(user_id="u1", spend_cap=pb.LimitValues(daily_micros=60_000)),
        metadata=tokens.user("u1"),
    )
    assert rules_of(alerts(budget, tokens.admin())) == [("user_limit_50", "u1")]
    # Held before the cap, committed after it: 50k of 60k is past 80%.
    commit(budget, tokens, held, 20_000)
    assert rules_of(alerts(budget, tokens.admin()))[0] == ("user_limit_80", "u1")
    # An admin's override below the spend: 100%.
    budget.stub.SetUserLimits(
        pb.SetUserLimitsRequest(user_id="u1", overrides=pb.LimitValues(daily_micros=40_000)),
        metadata=tokens.admin(),
    )
    assert rules_of(alerts(budget, tokens.admin()))[0] == ("user_limit_100", "u1")


def test_a_raised_limit_or_a_rate_change_raises_nothing(budget, tokens) -> None:
    spend(budget, tokens, 40_000)
    budget.stub.SetUserTier(
        pb.SetUserTierRequest(user_id="u1", tier=pb.USER_TIER_PRO), metadata=tokens.admin()
    )
    assert alerts(budget, tokens.admin()) == []


def test_the_system_limits_raise_system_alerts(budget, tokens) -> None:
    spend(budget, tokens, 40_000, user="u1")
    spend(budget, tokens, 40_000, user="u2")
    budget.stub.SetSystemLimits(
        pb.SetSystemLimitsRequest(daily_limit_micros=100_000), metadata=tokens.admin()
    )
    system = alerts(budget, tokens.admin(), system=True)
    assert [(a.rule, a.system, a.user_id, a.severity) for a in system] == [
        ("system_limit_80", True, "", apb.ALERT_SEVERITY_WARNING)
    ]
    assert system[0].message.startswith("system daily budget reached 80% of its limit")
    # A commit of another user takes the system to 100%.
    spend(budget, tokens, 20_000, user="u3")
    assert rules_of(alerts(budget, tokens.admin()))[0] == ("system_limit_100", "system")


def test_list_alerts_filters_by_subject_rule_severity_and_time(budget, tokens, clock) -> None:
    spend(budget, tokens, 50_000, user="u1")
    clock.advance(timedelta(hours=1))
    spend(budget, tokens, 80_000, user="u2")
    admin = tokens.admin()
    assert rules_of(alerts(budget, admin, user_id="u2")) == [("user_limit_80", "u2")]
    assert rules_of(alerts(budget, admin, rule="user_limit_50")) == [("user_limit_50", "u1")]
    assert rules_of(alerts(budget, admin, severity=apb.ALERT_SEVERITY_WARNING)) == [
        ("user_limit_80", "u2")
    ]
    start = Timestamp()
    start.FromDatetime(T0 + timedelta(minutes=30))
    assert rules_of(alerts(budget, admin, start_time=start)) == [("user_limit_80", "u2")]
    assert rules_of(alerts(budget, admin, end_time=start)) == [("user_limit_50", "u1")]
    assert alerts(budget, admin, system=True) == []


def test_a_user_sees_only_its_own_alerts(budget, tokens) -> None:
    spend(budget, tokens, 50_000, user="u1")
    spend(budget, tokens, 80_000, user="u2")
    assert rules_of(alerts(budget, tokens.user("u1"))) == [("user_limit_50", "u1")]
    assert rules_of(alerts(budget, tokens.user("u2"), user_id="u2")) == [("user_limit_80", "u2")]
    for request in (apb.ListAlertsRequest(user_id="u2"), apb.ListAlertsRequest(system=True)):
        assert (
            code_of(lambda r=request: budget.stub.ListAlerts(r, metadata=tokens.user("u1")))
            == grpc.StatusCode.PERMISSION_DENIED
        )
    # An internal backend has no business reading alerts.
    assert (
        code_of(lambda: budget.stub.ListAlerts(apb.ListAlertsRequest(), metadata=tokens.service()))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert (
        code_of(lambda: budget.stub.ListAlerts(apb.ListAlertsRequest()))
        == grpc.StatusCode.UNAUTHENTICATED
    )


def test_list_alerts_refuses_bad_input(budget, tokens) -> None:
    end = Timestamp()
    end.FromDatetime(T0)
    for request in (
        apb.ListAlertsRequest(page_size=-1),
        apb.ListAlertsRequest(page_token="nonsense"),
        apb.ListAlertsRequest(start_time=end, end_time=end),
    ):
        assert (
            code_of(lambda r=request: budget.stub.ListAlerts(r, metadata=tokens.admin()))
            == grpc.StatusCode.INVALID_ARGUMENT
        )


def test_a_silenced_rule_is_recorded_silenced_until_unsilenced(budget, tokens) -> None:
    silenced = budget.stub.SilenceAlerts(
        apb.SilenceAlertsRequest(user_id="u1", rule="user_limit_50"), metadata=tokens.user("u1")
    ).silence
    assert (silenced.rule, silenced.user_id, silenced.created_by) == ("user_limit_50", "u1", "u1")
    assert not silenced.HasField("expire_time")
    spend(budget, tokens, 50_000, user="u1")
    spend(budget, tokens, 50_000, user="u2")  # another user's rule is not silenced
    found = {a.user_id: a.silenced for a in alerts(budget, tokens.admin())}
    assert found == {"u1": True, "u2": False}

    budget.stub.UnsilenceAlerts(
        apb.UnsilenceAlertsRequest(rule="user_limit_50"), metadata=tokens.user("u1")
    )
    spend(budget, tokens, 30_000, user="u1")  # 80%, a rule never silenced
    assert not alerts(budget, tokens.user("u1"))[0].silenced
    assert (
        code_of(
            lambda: budget.stub.UnsilenceAlerts(
                apb.UnsilenceAlertsRequest(rule="user_limit_50"), metadata=tokens.user("u1")
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )


def test_a_silence_ends_at_its_expire_time(budget, tokens, clock) -> None:
    until = Timestamp()
    until.FromDatetime(T0 + timedelta(hours=1))
    budget.stub.SilenceAlerts(
        apb.SilenceAlertsRequest(system=True, rule="system_limit_80", expire_time=until),
        metadata=tokens.admin(),
    )
    clock.advance(timedelta(hours=2))
    spend(budget, tokens, 80_000)
    budget.stub.SetSystemLimits(
        pb.SetSystemLimitsRequest(daily_limit_micros=100_000), metadata=tokens.admin()
    )
    assert [a.silenced for a in alerts(budget, tokens.admin(), system=True)] == [False]


def test_who_may_silence_what(budget, tokens) -> None:
    def silence(metadata, **request):  # type: ignore[no-untyped-def]
        return code_of(
            lambda: budget.stub.SilenceAlerts(
                apb.SilenceAlertsRequest(**request), metadata=metadata
            )
        )

    user = tokens.user("u1")
    assert silence(user, user_id="u2", rule="user_limit_50") == grpc.StatusCode.PERMISSION_DENIED
    assert silence(user, system=True, rule="burn_rate") == grpc.StatusCode.PERMISSION_DENIED
    assert silence(tokens.service(), rule="burn_rate") == grpc.StatusCode.PERMISSION_DENIED
    assert silence(user, rule="no_such_rule") == grpc.StatusCode.INVALID_ARGUMENT
    assert silence(tokens.admin(), rule="burn_rate") == grpc.StatusCode.INVALID_ARGUMENT  # whose?
    past = Timestamp()
    past.FromDatetime(T0 - timedelta(seconds=1))
    assert silence(user, rule="burn_rate", expire_time=past) == grpc.StatusCode.INVALID_ARGUMENT
    admin = budget.stub.SilenceAlerts(
        apb.SilenceAlertsRequest(user_id="u2", rule="user_limit_50"), metadata=tokens.admin()
    )
    assert admin.silence.created_by == "ops"
    spend(budget, tokens, 50_000, user="u2")
    assert [a.silenced for a in alerts(budget, tokens.admin())] == [True]


def test_get_limits_shows_the_threshold_reached_and_when_the_limit_runs_out(budget, tokens) -> None:
    spend(budget, tokens, 80_000)
    limits = budget.stub.GetLimits(pb.GetLimitsRequest(), metadata=tokens.user("u1"))
    daily, monthly, system_daily, _ = limits.windows
    assert (daily.threshold_percent, daily.warning) == (80, "your daily limit is 80% used")
    # 0.08 USD in the last 3 hours: the last 0.02 go in 45 minutes.
    assert daily.projected_exhaustion_time.ToDatetime() == (T0 + timedelta(minutes=45)).replace(
        tzinfo=None
    )
    assert (monthly.threshold_percent, monthly.warning) == (0, "")
    # 0.92 USD more at 0.08 per 3 hours: 34.5 hours, before the month ends.
    assert monthly.projected_exhaustion_time.ToDatetime() == (
        T0 + timedelta(hours=34, minutes=30)
    ).replace(tzinfo=None)
    # The system's 50 USD day at the pace of its first 12 hours: not today.
    assert system_daily.threshold_percent == 0
    assert not system_daily.HasField("projected_exhaustion_time")


def test_get_limits_says_when_a_limit_is_reached(budget, tokens) -> None:
    spend(budget, tokens, 100_000)
    daily = budget.stub.GetLimits(pb.GetLimitsRequest(), metadata=tokens.user("u1")).windows[0]
    assert (daily.threshold_percent, daily.warning) == (100, "your daily limit is reached")
    assert daily.projected_exhaustion_time.ToDatetime() == T0.replace(tzinfo=None)


# Credits: thresholds of the effective limit (the limit plus active credits)


def test_a_credit_moves_the_thresholds_to_the_limit_plus_the_credit(budget, tokens) -> None:
    grant(budget, tokens, 50_000)  # 0.15 USD today
    spend(budget, tokens, 60_000)  # 40%
    spend(budget, tokens, 40_000)  # 100% of the limit, 67% of limit + credit
    found = alerts(budget, tokens.admin())
    assert rules_of(found) == [("user_limit_50", "u1")]
    assert found[0].message == (
        "user u1 daily budget reached 50% of its limit: spent 0.10 USD of 0.15 USD"
    )
    spend(budget, tokens, 20_000)  # 80%
    spend(budget, tokens, 30_000)  # 100%
    assert rules_of(alerts(budget, tokens.admin())) == [
        ("user_limit_100", "u1"),
        ("user_limit_80", "u1"),
        ("user_limit_50", "u1"),
    ]


def test_the_first_commit_after_a_credit_expires_raises_what_the_lower_limit_reaches(
    budget, tokens, clock
) -> None:
    grant(budget, tokens, 50_000, expires=T0 + timedelta(hours=1))
    spend(budget, tokens, 60_000)
    spend(budget, tokens, 30_000)  # 60% of 0.15
    assert rules_of(alerts(budget, tokens.admin())) == [("user_limit_50", "u1")]
    clock.set(T0 + timedelta(hours=1))  # 90% of 0.10 now, but no transaction crossed it
    spend(budget, tokens, 5_000)  # 95%: 80 is raised now
    assert rules_of(alerts(budget, tokens.admin())) == [
        ("user_limit_80", "u1"),
        ("user_limit_50", "u1"),
    ]
    spend(budget, tokens, 5_000)  # 100%
    assert rules_of(alerts(budget, tokens.admin())) == [
        ("user_limit_100", "u1"),
        ("user_limit_80", "u1"),
        ("user_limit_50", "u1"),
    ]


def test_a_lowered_limit_is_judged_with_the_credit(budget, tokens) -> None:
    grant(budget, tokens, 50_000)
    spend(budget, tokens, 60_000)  # 40% of 0.15
    budget.stub.SetUserLimits(
        pb.SetUserLimitsRequest(user_id="u1", overrides=pb.LimitValues(daily_micros=70_000)),
        metadata=tokens.admin(),
    )
    # 0.06 of 0.07 + 0.05: 50%, not the 85% of the limit alone.
    assert rules_of(alerts(budget, tokens.admin())) == [("user_limit_50", "u1")]
