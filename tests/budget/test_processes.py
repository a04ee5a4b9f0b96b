"""Several BudgetService processes on one database (two real replicas, both
databases): a limit that allows exactly K reservations grants exactly K,
however the callers are spread over the replicas, and reapers running in
every replica release each expired reservation exactly once.

The processes use the real clock, so their windows are today's. The windows'
zone is chosen so that local midnight is about twelve hours away, and a test
never straddles a day or month boundary.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import grpc
from recipeimage.budget.v1 import budget_service_pb2 as pb
from sqlalchemy import func, select

from services.budget.store.models import ReservationRow, WindowRow
from services.common.db import create_db_engine, create_sessions
from tests.conftest import TEST_SECRET
from tests.support.budget_server import BudgetProcess, budget_processes

CALLERS = 32


def zone_far_from_midnight() -> str:
    """An Etc/GMT zone where it is about noon now (its midnight ~12 h away)."""
    offset = 12 - datetime.now(UTC).hour  # -11 .. 12
    if offset == 0:
        return "Etc/UTC"
    # POSIX-style names: Etc/GMT-5 is five hours ahead of UTC.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def race(replicas: list[BudgetProcess], count: int, call):  # type: ignore[no-untyped-def]
    """call(stub, i) from `count` threads released together, alternating replicas."""
    gate = threading.Barrier(count)

    def run(number: int):  # type: ignore[no-untyped-def]
        stub = replicas[number % len(replicas)].stub
        gate.wait()
        try:
            return call(stub, number)
        except grpc.RpcError as error:
            return error.code()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def window_sums(database_url: str) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(scope, subject, kind) -> (spent, reserved) of today's windows, read directly."""
    engine = create_db_engine(database_url)
    try:
        with create_sessions(engine).begin() as session:
            rows = session.execute(
                select(
                    WindowRow.scope,
                    WindowRow.subject,
                    WindowRow.kind,
                    func.sum(WindowRow.spent_micros),
                    func.sum(WindowRow.reserved_micros),
                ).group_by(WindowRow.scope, WindowRow.subject, WindowRow.kind)
            ).all()
    finally:
        engine.dispose()
    return {(r[0], r[1], r[2]): (int(r[3]), int(r[4])) for r in rows}


def test_two_replicas_grant_exactly_what_a_limit_allows(database_url, tokens) -> None:
    amount = 30_000
    user_allows, system_allows = 7, 10
    env = {
        "RECIPEIMAGE_BUDGET_TIME_ZONE": zone_far_from_midnight(),
        # Room for 7 and a bit, never 8; and the system for 10, never 11.
        "RECIPEIMAGE_TIER_FREE": f"daily={user_allows * amount + amount - 1},"
        f"monthly=1000000000,per_generation={amount}",
        "RECIPEIMAGE_SYSTEM_DAILY_LIMIT_MICROS": str(system_allows * amount + amount - 1),
    }
    with budget_processes(2, database_url, TEST_SECRET, env) as replicas:

        def reserve(user: str, key: str):  # type: ignore[no-untyped-def]
            return lambda stub, n: stub.ReserveBudget(
                pb.ReserveBudgetRequest(
                    user_id=user, amount_micros=amount, idempotency_key=f"{key}{n}"
                ),
                metadata=tokens.service(),
                timeout=30,
            )

        # One user, many callers on both replicas: exactly K of its own limit.
        results = race(replicas, CALLERS, reserve("u1", "one-user-"))
        granted = [r for r in results if isinstance(r, pb.ReserveBudgetResponse)]
        assert len(granted) == user_allows, Counter(map(type, results))
        assert Counter(r for r in results if not isinstance(r, pb.ReserveBudgetResponse)) == {
            grpc.StatusCode.RESOURCE_EXHAUSTED: CALLERS - user_allows
        }
        sums = window_sums(database_url)
        assert sums[("user", "u1", "day")] == (0, user_allows * amount)
        assert sums[("system", "*", "day")] == (0, user_allows * amount)

        # Many users at once against the system's daily limit: 3 more fit.
        results = race(
            replicas,
            CALLERS,
            lambda stub, n: reserve(f"user-{n}", "many-users-")(stub, n),
        )
        assert sum(isinstance(r, pb.ReserveBudgetResponse) for r in results) == 3
        assert window_sums(database_url)[("system", "*", "day")] == (0, system_allows * amount)

        # Commits through one replica race reservations through the other:
        # still nothing beyond the limit, and every commit counted once.
        ids = [g.reservation.reservation_id for g in granted]

        def commit_or_reserve(stub, n: int):  # type: ignore[no-untyped-def]
            if n < len(ids):
                return stub.CommitReservation(
                    pb.CommitReservationRequest(reservation_id=ids[n], actual_cost_micros=amount),
                    metadata=tokens.service(),
                    timeout=30,
                )
            return reserve("u1", "late-")(stub, n)

        results = race(replicas, CALLERS, commit_or_reserve)
        assert sum(isinstance(r, pb.CommitReservationResponse) for r in results) == len(ids)
        assert sum(isinstance(r, pb.ReserveBudgetResponse) for r in results) == 0
        sums = window_sums(database_url)
        assert sums[("user", "u1", "day")] == (user_allows * amount, 0)
        assert sums[("system", "*", "day")] == (user_allows * amount, 3 * amount)

        check = replicas[1].stub.ReconcileLedger(
            pb.ReconcileLedgerRequest(), metadata=tokens.admin()
        )
        assert check.consistent, check.differences


def test_reapers_in_two_replicas_release_each_reservation_once(database_url, tokens) -> None:
    env = {
        "RECIPEIMAGE_BUDGET_TIME_ZONE": zone_far_from_midnight(),
        "RECIPEIMAGE_RESERVATION_TTL_SECONDS": "1",
        "RECIPEIMAGE_REAPER_INTERVAL_SECONDS": "0.1",
    }
    count = 24
    with budget_processes(2, database_url, TEST_SECRET, env) as replicas:
        for number in range(count):
            replicas[number % 2].stub.ReserveBudget(
                pb.ReserveBudgetRequest(
                    user_id=f"u{number % 4}", amount_micros=10_000, idempotency_key=f"k{number}"
                ),
                metadata=tokens.service(),
                timeout=30,
            )
        engine = create_db_engine(database_url)
        try:
            sessions = create_sessions(engine)
            deadline = time.monotonic() + 30
            while True:
                with sessions.begin() as session:
                    states = Counter(session.scalars(select(ReservationRow.state)).all())
                if states == {"expired": count}:
                    break
                assert time.monotonic() < deadline, states
                time.sleep(0.1)
        finally:
            engine.dispose()
        sums = window_sums(database_url)
        assert all(reserved == 0 for _, reserved in sums.values()), sums
        # No reservation was expired twice, by either replica.
        time.sleep(0.3)
        expired = [
            entry["reservation_id"]
            for replica in replicas
            for entry in replica.messages("reservation expired")
        ]
        assert len(expired) == count and len(set(expired)) == count, Counter(expired)
