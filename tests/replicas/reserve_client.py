"""One client process of the reservation race (test_reservation_race.py).

    python -m tests.replicas.reserve_client '{"target": ..., "token": ..., ...}'

Opens a round_robin channel to every BudgetService (as ImageService does),
prints "ready" once it is connected, starts on the first line it reads from
stdin, then makes `per_user` ReserveBudget calls for each user from `threads`
threads and prints one JSON line: every call's result, ["granted",
reservation id] or ["refused", status code name].
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import budget_service_pb2_grpc

from services.common.transport import WireLimits, open_channel


def main() -> int:
    job = json.loads(sys.argv[1])
    metadata = (("authorization", f"Bearer {job['token']}"),)
    calls = [(user, n) for n in range(job["per_user"]) for user in job["users"]]
    with open_channel(job["target"], None, WireLimits()) as channel:
        stub = budget_service_pb2_grpc.BudgetServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(4):  # a call to each replica, so every connection is up
            health.Check(health_pb2.HealthCheckRequest(), timeout=10, wait_for_ready=True)
        print("ready", flush=True)
        sys.stdin.readline()

        def reserve(call: tuple[str, int]) -> list[str]:
            user, n = call
            try:
                response = stub.ReserveBudget(
                    pb.ReserveBudgetRequest(
                        user_id=user,
                        amount_micros=job["amount"],
                        idempotency_key=f"{job['prefix']}-{user}-{n}",
                    ),
                    metadata=metadata,
                    timeout=60,
                )
            except grpc.RpcError as error:
                return ["refused", error.code().name]
            return ["granted", response.reservation.reservation_id]

        with ThreadPoolExecutor(job["threads"]) as pool:
            results = list(pool.map(reserve, calls))
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
