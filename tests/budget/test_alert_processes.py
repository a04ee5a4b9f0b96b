"""Two real BudgetService processes on one database (both databases): many
commits racing over the same thresholds, through both replicas at once,
leave exactly one alert per rule, subject and window; and the evaluator
running in both replicas raises its alerts once.
"""

from __future__ import annotations

import time
from collections import Counter

from recipeimage.budget.v1 import alerts_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb
from sqlalchemy import select

from services.budget.store.models import AlertRow
from services.common.db import create_db_engine, create_sessions
from tests.budget.test_processes import race, zone_far_from_midnight
from tests.conftest import TEST_SECRET
from tests.support.budget_server import budget_processes

AMOUNT = 50_000
CALLERS = 20  # 20 x 0.05 USD: exactly the user's and the system's daily limit


def alert_rows(database_url: str) -> list[tuple[str, str, str]]:
    engine = create_db_engine(database_url)
    try:
        with create_sessions(engine).begin() as session:
            rows = session.execute(select(AlertRow.rule, AlertRow.subject, AlertRow.window)).all()
    finally:
        engine.dispose()
    return [(row[0], row[1], row[2]) for row in rows]


def test_racing_commits_on_two_replicas_raise_each_alert_once(database_url, tokens) -> None:
    env = {
        "RECIPEIMAGE_BUDGET_TIME_ZONE": zone_far_from_midnight(),
        "RECIPEIMAGE_TIER_FREE": f"daily={CALLERS * AMOUNT},monthly=1000000000,"
        f"per_generation={AMOUNT}",
        "RECIPEIMAGE_SYSTEM_DAILY_LIMIT_MICROS": str(CALLERS * AMOUNT),
        "RECIPEIMAGE_ALERT_SYSTEM_THRESHOLDS": "50,100",
        "RECIPEIMAGE_ALERT_EVALUATION_INTERVAL_SECONDS": "0.2",
        # Any spend is a spike of "unusual spend" (floor 1 micro, no history).
        "RECIPEIMAGE_ALERT_UNUSUAL_SPEND_FLOOR_MICROS": "1",
    }
    with budget_processes(2, database_url, TEST_SECRET, env) as replicas:
        held = race(
            replicas,
            CALLERS,
            lambda stub, n: stub.ReserveBudget(
                pb.ReserveBudgetRequest(
                    user_id="u1", amount_micros=AMOUNT, idempotency_key=f"attempt-{n}"
                ),
                metadata=tokens.service(),
                timeout=30,
            ),
        )
        ids = [response.reservation.reservation_id for response in held]
        committed = race(
            replicas,
            CALLERS,
            lambda stub, n: stub.CommitReservation(
                pb.CommitReservationRequest(reservation_id=ids[n], actual_cost_micros=AMOUNT),
                metadata=tokens.service(),
                timeout=30,
            ),
        )
        assert all(isinstance(r, pb.CommitReservationResponse) for r in committed), committed
        time.sleep(1.5)  # several evaluator runs in each replica
        rows = Counter(alert_rows(database_url))
        listed = replicas[1].stub.ListAlerts(
            apb.ListAlertsRequest(page_size=100), metadata=tokens.admin()
        )

    # Judged mid-race, the system's and the user's day may have looked like
    # running out; each at most once, however many runs in both replicas.
    assert rows.pop(("burn_rate", "", "daily"), 0) <= 1
    assert rows.pop(("burn_rate", "u1", "daily"), 0) <= 1
    assert rows == {
        ("user_limit_50", "u1", "daily"): 1,
        ("user_limit_80", "u1", "daily"): 1,
        ("user_limit_100", "u1", "daily"): 1,
        ("system_limit_50", "", "daily"): 1,
        ("system_limit_100", "", "daily"): 1,
        ("unusual_spend", "u1", ""): 1,
    }
    assert len({a.id for a in listed.alerts}) == len(listed.alerts) >= len(rows)
