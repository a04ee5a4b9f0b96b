"""10,000 concurrent ReserveBudget calls from two client processes, each
spreading them with round_robin over two BudgetService processes on one
PostgreSQL database, against limits that admit exactly K: exactly K are
granted, a sampler reading the windows table during the race never sees
committed + reserved above a limit, and after the grants are committed or
released the ledger reconciles.

Every user's daily limit admits 3 reservations and the system's admits K;
the users together would take more than K, so both limits bind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from recipeimage.budget.v1 import budget_service_pb2 as pb
from sqlalchemy import func, select

from services.budget.store.models import WindowRow
from services.common.auth import Role
from services.common.db import create_db_engine, create_sessions
from tests.budget.test_processes import window_sums, zone_far_from_midnight
from tests.replicas.conftest import REPLICAS
from tests.support.replicas import Replicas, running_replicas
from tests.support.service_processes import ROOT

pytestmark = REPLICAS

AMOUNT = 10_000
USERS = 100
PER_USER_PER_CLIENT = 50
CLIENTS = 2
CALLS = USERS * PER_USER_PER_CLIENT * CLIENTS  # 10,000
USER_ALLOWS = 3
K = 200  # the system's: fewer than USERS * USER_ALLOWS
USER_DAILY = USER_ALLOWS * AMOUNT + AMOUNT - 1
SYSTEM_DAILY = K * AMOUNT + AMOUNT - 1
MONTHLY = 1_000_000_000_000


@dataclass
class Sampler:
    """Reads every window's committed + reserved, one statement (one snapshot)
    at a time, until stopped; keeps whatever went above its limit."""

    database_url: str
    samples: int = 0
    busy_samples: int = 0  # samples that saw money held
    over: list[tuple[object, ...]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def limit(self, scope: str, kind: str) -> int:
        if kind == "month":
            return MONTHLY
        return USER_DAILY if scope == "user" else SYSTEM_DAILY

    def run(self) -> None:
        engine = create_db_engine(self.database_url, pool_size=1)
        try:
            sessions = create_sessions(engine)
            while not self.stopping.is_set():
                with sessions.begin() as session:
                    rows = session.execute(
                        select(
                            WindowRow.scope,
                            WindowRow.subject,
                            WindowRow.kind,
                            WindowRow.start_date,
                            func.sum(WindowRow.spent_micros + WindowRow.reserved_micros),
                            func.sum(WindowRow.reserved_micros),
                        ).group_by(
                            WindowRow.scope, WindowRow.subject, WindowRow.kind, WindowRow.start_date
                        )
                    ).all()
                self.samples += 1
                self.busy_samples += any(row[5] for row in rows)
                self.over += [
                    tuple(row) for row in rows if row[4] > self.limit(str(row[0]), str(row[2]))
                ]
        finally:
            engine.dispose()


def start_client(replicas: Replicas, number: int, token: str) -> subprocess.Popen[str]:
    job = {
        "target": replicas.budget_target,
        "token": token,
        "amount": AMOUNT,
        "users": [f"user-{u}" for u in range(USERS)],
        "per_user": PER_USER_PER_CLIENT,
        "threads": 16,
        "prefix": f"client-{number}",
    }
    client = subprocess.Popen(
        [sys.executable, "-m", "tests.replicas.reserve_client", json.dumps(job)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    assert client.stdout.readline().strip() == "ready"
    return client


def finish(client: subprocess.Popen[str]) -> list[list[str]]:
    out, _ = client.communicate(timeout=240)
    assert client.returncode == 0
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_ten_thousand_racing_reservations_grant_exactly_k(
    postgres_url, tmp_path, fake, authenticator, tokens
) -> None:
    env = {
        "RECIPEIMAGE_BUDGET_TIME_ZONE": zone_far_from_midnight(),
        "RECIPEIMAGE_TIER_FREE": f"daily={USER_DAILY},monthly={MONTHLY},per_generation={AMOUNT}",
        "RECIPEIMAGE_SYSTEM_DAILY_LIMIT_MICROS": str(SYSTEM_DAILY),
        "RECIPEIMAGE_SYSTEM_MONTHLY_LIMIT_MICROS": str(MONTHLY),
    }
    with running_replicas(postgres_url, tmp_path, fake, images=0, budget_env=env) as replicas:
        token = authenticator.mint(Role.SERVICE, "recipe-backend")
        clients = [start_client(replicas, number, token) for number in range(CLIENTS)]
        sampler = Sampler(postgres_url)
        sampling = threading.Thread(target=sampler.run)
        sampling.start()
        try:
            for client in clients:
                assert client.stdin is not None
                client.stdin.write("go\n")
                client.stdin.flush()
            results = [result for client in clients for result in finish(client)]
        finally:
            sampler.stopping.set()
            sampling.join(30)

        assert len(results) == CALLS
        outcomes = Counter(result[1] if result[0] == "refused" else "granted" for result in results)
        assert outcomes == {"granted": K, "RESOURCE_EXHAUSTED": CALLS - K}
        assert sampler.over == []
        assert sampler.busy_samples >= 3, (sampler.samples, sampler.busy_samples)
        # Both replicas served the race: the clients' round_robin spread it.
        served = [replicas.rpc_count(budget, "ReserveBudget") for budget in replicas.budgets]
        assert sum(served) == CALLS and min(served) > 0, served

        granted = [result[1] for result in results if result[0] == "granted"]
        settle_all(replicas, granted, tokens)
        sums = window_sums(postgres_url)
        assert sums[("system", "*", "day")] == (K // 2 * AMOUNT, 0)
        assert all(reserved == 0 for _, reserved in sums.values())
        assert all(
            spent <= USER_DAILY
            for (scope, _, kind), (spent, _) in sums.items()
            if (scope, kind) == ("user", "day")
        )
        check = replicas.budget.ReconcileLedger(
            pb.ReconcileLedgerRequest(), metadata=tokens.admin()
        )
        assert check.consistent, check.differences


def settle_all(replicas: Replicas, granted: list[str], tokens) -> None:  # type: ignore[no-untyped-def]
    """Commit the first half of the grants at their amount, release the rest."""

    def settle(index_and_id: tuple[int, str]) -> None:
        index, reservation_id = index_and_id
        if index < len(granted) // 2:
            replicas.budget.CommitReservation(
                pb.CommitReservationRequest(
                    reservation_id=reservation_id, actual_cost_micros=AMOUNT
                ),
                metadata=tokens.service(),
                timeout=30,
            )
        else:
            replicas.budget.ReleaseReservation(
                pb.ReleaseReservationRequest(reservation_id=reservation_id),
                metadata=tokens.service(),
                timeout=30,
            )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(settle, enumerate(granted)))
