"""The periodic rules on SQLite and PostgreSQL, judged by the evaluator at
an injected instant: burn rate, unusual days, failure and content-policy
spikes, a collapse of the cache hit rate; each raised once however often
(and wherever) the evaluator runs."""

from __future__ import annotations

from datetime import timedelta

from recipeimage.budget.v1 import alerts_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.domain.alert_rules import AlertRules
from services.budget.store.alert_figures import AlertFigures
from services.budget.store.models import UsageRow
from tests.budget.alerts_support import spend, usage_row
from tests.budget.conftest import T0
from tests.budget.tools_support import grant


def add_records(budget, rows) -> None:  # type: ignore[no-untyped-def]
    with budget.app.sessions.begin() as session:
        session.add_all(rows)


def evaluate(budget, now=T0) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    raised = budget.app.evaluator.evaluate(now)
    return sorted((a.rule, a.subject, a.message) for a in raised)


def evaluate_system(budget, now=T0) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """The system's alerts of a run (its users' burn rates left out)."""
    return [alert for alert in evaluate(budget, now) if alert[1] == ""]


def evaluate_patterns(budget, now=T0) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """The pattern alerts of a run (burn rates left out: the test's ledger
    rows are spend at a pace too)."""
    return [alert for alert in evaluate(budget, now) if alert[0] != "burn_rate"]


def test_burn_rate_says_when_the_system_day_runs_out_and_fires_once(budget, tokens, clock) -> None:
    budget.stub.SetSystemLimits(
        pb.SetSystemLimitsRequest(daily_limit_micros=1_000_000), metadata=tokens.admin()
    )
    for user in ("u1", "u2", "u3"):
        spend(budget, tokens, 80_000, user=user)
    # 0.24 USD in the last 3 hours; 0.76 USD left: 9.5 hours at that pace,
    # 21:30, before the day ends at midnight UTC.
    assert evaluate_system(budget) == [
        ("burn_rate", "", "system daily budget runs out at 21:30 at this pace")
    ]
    assert evaluate_system(budget) == []
    assert evaluate_system(budget, T0 + timedelta(minutes=5)) == []


def test_burn_rate_names_the_day_of_the_month_it_runs_out(budget, tokens) -> None:
    budget.stub.SetSystemLimits(
        pb.SetSystemLimitsRequest(monthly_limit_micros=2_400_000), metadata=tokens.admin()
    )
    for user in ("u1", "u2", "u3"):
        spend(budget, tokens, 80_000, user=user)
    # 2.16 USD left at 0.24 per 3 hours: 27 hours, on Mar 11 at 15:00.
    assert evaluate_system(budget) == [
        ("burn_rate", "", "system monthly budget runs out on Mar 11 at this pace")
    ]


def test_no_burn_rate_alert_at_a_pace_that_lasts_the_window(budget, tokens) -> None:
    spend(budget, tokens, 80_000)
    assert evaluate_system(budget) == []


def test_a_day_far_above_the_users_own_median_is_unusual(budget) -> None:
    rules = AlertRules()
    history = []
    for days_ago in range(1, 15):
        day = T0 - timedelta(days=days_ago)
        history += [usage_row("steady", day, cost=10_000)]
        history += [usage_row("spender", day, cost=100_000)]
        history += [usage_row("rich", day, cost=1_000_000)]
    add_records(budget, history)
    today = [usage_row("spender", T0 - timedelta(hours=1), cost=1_000_000)]
    today += [usage_row("steady", T0 - timedelta(hours=1)) for _ in range(60)]
    today += [usage_row("rich", T0 - timedelta(hours=1), cost=2_000_000)]  # 2x: usual
    add_records(budget, today)
    assert evaluate_patterns(budget) == [
        (
            "unusual_generations",
            "steady",
            f"user steady generations today is 60, more than 5x its "
            f"{rules.baseline_days}-day median of 1",
        ),
        (
            "unusual_spend",
            "spender",
            "user spender spend today is 1.00 USD, more than 5x its 14-day median of 0.10 USD",
        ),
    ]
    assert evaluate_patterns(budget, T0 + timedelta(hours=1)) == []


def test_a_spend_below_the_floor_is_never_unusual(budget) -> None:
    add_records(budget, [usage_row("new", T0 - timedelta(hours=1), cost=900_000)])
    assert evaluate_patterns(budget) == []


def test_failure_and_content_policy_spikes(budget) -> None:
    recent = T0 - timedelta(minutes=30)
    rows = [usage_row(f"u{n}", recent) for n in range(9)]
    rows += [
        usage_row(f"f{n}", recent, outcome="failed", error="PROVIDER_ERROR: 500") for n in range(6)
    ]
    rows += [
        usage_row(f"p{n}", recent, outcome="failed", error="CONTENT_POLICY_VIOLATION: no")
        for n in range(5)
    ]
    rows += [usage_row("old", T0 - timedelta(hours=2), outcome="failed") for _ in range(50)]
    add_records(budget, rows)
    assert evaluate(budget) == [
        (
            "content_policy_spike",
            "",
            "5 of the last hour's 20 generation attempts were refused by the content policy",
        ),
        ("failure_spike", "", "6 of the last hour's 20 generation attempts failed"),
    ]


def test_too_few_attempts_are_no_spike(budget) -> None:
    recent = T0 - timedelta(minutes=30)
    add_records(budget, [usage_row(f"f{n}", recent, outcome="failed") for n in range(19)])
    assert evaluate(budget) == []


def half_hits_for_three_days() -> list[UsageRow]:
    """A cache hit rate of 50% on each of the three days before T0."""
    rows = []
    for days_ago in range(1, 4):
        day = T0 - timedelta(days=days_ago)
        rows += [usage_row("u1", day, outcome="cache_hit_exact") for _ in range(10)]
        rows += [usage_row("u1", day) for _ in range(10)]
    return rows


def test_a_collapse_of_the_cache_hit_rate(budget) -> None:
    rows = half_hits_for_three_days()
    recent = T0 - timedelta(minutes=10)
    rows += [usage_row("u2", recent, outcome="cache_hit_exact") for _ in range(2)]
    rows += [usage_row("u2", recent) for _ in range(20)]
    add_records(budget, rows)
    assert evaluate(budget) == [
        (
            "cache_hit_collapse",
            "",
            "cache hit rate of the last hour is 9%, against 50% over the previous 14 days",
        )
    ]


def test_a_steady_cache_hit_rate_raises_nothing(budget) -> None:
    rows = half_hits_for_three_days()
    recent = T0 - timedelta(minutes=10)
    rows += [usage_row("u2", recent, outcome="cache_hit_similar") for _ in range(10)]
    rows += [usage_row("u2", recent) for _ in range(12)]
    add_records(budget, rows)
    assert evaluate(budget) == []


# Users' windows at their own pace


def test_burn_rate_says_when_a_users_day_runs_out_and_fires_once(budget, tokens) -> None:
    for _ in range(3):
        spend(budget, tokens, 80_000, user="fast")
    spend(budget, tokens, 80_000, user="slow")
    # fast: 0.24 USD in the last 3 hours, 0.26 of its free tier's 0.50 left:
    # 3.25 hours, 15:15; 4.76 of its 5.00 a month: 59.5 hours, Mar 12. slow:
    # 0.42 left at 0.08 per 3 hours lasts past midnight, but not the month.
    assert evaluate(budget) == [
        ("burn_rate", "fast", "user fast daily budget runs out at 15:15 at this pace"),
        ("burn_rate", "fast", "user fast monthly budget runs out on Mar 12 at this pace"),
        ("burn_rate", "slow", "user slow monthly budget runs out on Mar 18 at this pace"),
    ]
    assert evaluate(budget) == []
    assert evaluate(budget, T0 + timedelta(minutes=5)) == []
    shown = budget.stub.ListAlerts(apb.ListAlertsRequest(), metadata=tokens.user("fast")).alerts
    assert sorted((a.rule, a.user_id, a.details["limit_micros"]) for a in shown) == [
        ("burn_rate", "fast", "500000"),
        ("burn_rate", "fast", "5000000"),
    ]


def test_a_users_burn_rate_is_judged_against_its_override(budget, tokens) -> None:
    budget.stub.SetUserLimits(
        pb.SetUserLimitsRequest(user_id="u1", overrides=pb.LimitValues(daily_micros=300_000)),
        metadata=tokens.admin(),
    )
    spend(budget, tokens, 80_000)
    # 0.22 left at 0.08 per 3 hours: 8.25 hours, 20:15.
    assert evaluate(budget) == [
        ("burn_rate", "u1", "user u1 daily budget runs out at 20:15 at this pace"),
        ("burn_rate", "u1", "user u1 monthly budget runs out on Mar 18 at this pace"),
    ]


def test_a_credit_that_lasts_past_the_reset_raises_no_burn_rate(budget, tokens) -> None:
    grant(budget, tokens, 1_000_000, user="fast")
    for _ in range(3):
        spend(budget, tokens, 80_000, user="fast")
    # 1.26 USD left at 0.24 per 3 hours: 15.75 hours, past midnight; the
    # month has no credit.
    assert evaluate(budget) == [
        ("burn_rate", "fast", "user fast monthly budget runs out on Mar 12 at this pace")
    ]


def test_a_credit_that_expires_counts_only_while_active(budget, tokens) -> None:
    grant(budget, tokens, 1_000_000, user="fast", expires=T0 + timedelta(minutes=30))
    for _ in range(3):
        spend(budget, tokens, 80_000, user="fast")
    assert evaluate(budget) == [
        ("burn_rate", "fast", "user fast monthly budget runs out on Mar 12 at this pace")
    ]
    # At 12:30 the credit no longer counts: 0.26 left at 0.24 per 3 hours.
    assert evaluate(budget, T0 + timedelta(minutes=30)) == [
        ("burn_rate", "fast", "user fast daily budget runs out at 15:45 at this pace")
    ]


def test_a_user_without_recent_spend_is_not_evaluated(budget, tokens, clock) -> None:
    clock.set(T0 - timedelta(hours=4))
    for _ in range(5):
        spend(budget, tokens, 80_000, user="earlier")
    clock.set(T0)
    spend(budget, tokens, 10_000, user="now")
    add_records(budget, [usage_row("cached", T0 - timedelta(minutes=5))])  # cost 0
    with budget.app.sessions.begin() as session:
        spenders = AlertFigures(session).spenders_since(T0 - timedelta(hours=3))
    assert spenders == {"now": 10_000}
    assert evaluate(budget) == []
