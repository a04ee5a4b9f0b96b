"""The service bench's load: client processes of their own, each running
caller threads against the real servers, as a user of the services would.

    with ClientPool(processes=2) as clients:
        result = clients.closed(operation, callers=16, seconds=5)
        result = clients.open(operation, rate=300, seconds=5)

The pool starts `processes` spawned processes once; each phase is a command
to all of them, started at the same wall-clock instant. Closed loop: each
caller sends its next request when the previous answers. Open loop: requests
are scheduled at a constant total rate, independent of completions (request
n of the run at start + n / rate, interleaved over every caller of every
process), and each latency is measured from its scheduled send time, so a
server that falls behind is charged for the queue it causes (no coordinated
omission). Tokens are minted as the tests mint them (a service's, an admin's).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

# Calls per thread before a phase starts: connections up, plans prepared.
WARM_CALLS = 2


@dataclass(frozen=True)
class Operation:
    """What one call does: kind (see _CALLS), the server, the JWT secret, and
    kind-specific parameters."""

    name: str
    kind: str
    target: str
    secret: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class PhaseResult:
    latencies: list[float]
    seconds: float
    errors: int = 0
    first_error: str = ""

    @property
    def calls(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(0.5)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(0.99)


@dataclass(frozen=True)
class _Command:
    operation: Operation
    mode: str  # "closed" or "open"
    threads: int
    seconds: float
    rate: float = 0.0  # open loop: requests per second over all processes
    process_index: int = 0
    processes: int = 1
    nonce: str = ""


# -- the calls (built inside the client process)


def _metadata(secret: str, role: str, subject: str) -> tuple[tuple[str, str], ...]:
    from services.common.auth import Authenticator, Role

    token = Authenticator(secret).mint(Role(role), subject, 7200)
    return (("authorization", f"Bearer {token}"),)


def _call_factory(operation: Operation, channel: Any) -> Callable[[str, int], None]:
    """A function call(caller, n) making one call of the operation as `caller`."""
    kind, params = operation.kind, operation.params
    if kind == "empty":
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        return lambda _caller, _n: _ignore(health.Check(request, timeout=30))
    if kind in ("pair", "limits", "check", "usage_stats"):
        return budget_call(kind, params, channel, _metadata(operation.secret, "service", "bench"))
    return _image_call(kind, params, channel, operation.secret)


def _ignore(_reply: object) -> None:
    return None


def budget_call(
    kind: str, params: dict[str, Any], channel: Any, service: tuple[tuple[str, str], ...]
) -> Callable[[str, int], None]:
    from google.protobuf import timestamp_pb2
    from recipeimage.budget.v1 import budget_service_pb2 as pb
    from recipeimage.budget.v1 import budget_service_pb2_grpc
    from recipeimage.common.v1 import image_quality_pb2

    stub = budget_service_pb2_grpc.BudgetServiceStub(channel)
    usage = pb.UsageRecord(
        model="gpt-image-1.5",
        size="1024x1024",
        quality=image_quality_pb2.IMAGE_QUALITY_MEDIUM,
        provider="offline",
        prompt="Professional food photograph of broccoli soup",
    )

    def pair(caller: str, n: int) -> None:
        # 50 users per caller: a user's own rows rarely collide; the system's always do.
        held = stub.ReserveBudget(
            pb.ReserveBudgetRequest(
                user_id=f"bench-{caller}-{n % 50}",
                amount_micros=50_000,
                idempotency_key=f"pair-{caller}-{n}",
            ),
            metadata=service,
            timeout=30,
        ).reservation
        stub.CommitReservation(
            pb.CommitReservationRequest(
                reservation_id=held.reservation_id, actual_cost_micros=42_000, usage=usage
            ),
            metadata=service,
            timeout=30,
        )

    def limits(caller: str, n: int) -> None:
        stub.GetLimits(
            pb.GetLimitsRequest(user_id=f"bench-{caller}-{n % 50}"), metadata=service, timeout=30
        )

    def check(caller: str, n: int) -> None:
        reply = stub.CheckBudget(
            pb.CheckBudgetRequest(user_id=f"bench-{caller}-{n % 50}", amount_micros=50_000),
            metadata=service,
            timeout=30,
        )
        if not reply.allowed:
            raise RuntimeError("CheckBudget refused: the bench's limits are meant to be unlimited")

    def usage_stats(_caller: str, _n: int) -> None:
        now = int(time.time())
        stub.GetUsageStats(
            pb.GetUsageStatsRequest(
                user_id=params["user_id"],
                period=pb.STATS_PERIOD_RANGE,
                start_time=timestamp_pb2.Timestamp(seconds=now - params["days"] * 86_400),
                end_time=timestamp_pb2.Timestamp(seconds=now + 60),
            ),
            metadata=service,
            timeout=30,
        )

    calls: dict[str, Callable[[str, int], None]] = {
        "pair": pair,
        "limits": limits,
        "check": check,
        "usage_stats": usage_stats,
    }
    return calls[kind]


def _image_call(
    kind: str, params: dict[str, Any], channel: Any, secret: str
) -> Callable[[str, int], None]:
    from recipeimage.common.v1 import image_quality_pb2
    from recipeimage.image.v1 import image_service_pb2 as pb
    from recipeimage.image.v1 import image_service_pb2_grpc

    stub = image_service_pb2_grpc.ImageServiceStub(channel)
    service = _metadata(secret, "service", "bench")
    rng = random.Random()

    def exact(caller: str, _n: int) -> None:
        prompt = f"{params['prompt_prefix']}{rng.randrange(params['prompts'])}"
        reply = stub.GenerateImage(
            pb.GenerateImageRequest(user_id=f"bench-{caller}", prompt=prompt),
            metadata=service,
            timeout=30,
        )
        if reply.source != pb.IMAGE_SOURCE_CACHE_EXACT:
            raise RuntimeError(f"expected an exact cache hit, got source {reply.source}")

    if kind == "exact":
        return exact
    if kind == "similar":
        from tests.image.conftest import dish_pairs, proto_recipe

        request = pb.GenerateImageRequest(
            recipe=proto_recipe(dish_pairs().recipes[params["recipe"]]),
            quality=image_quality_pb2.IMAGE_QUALITY_LOW,
            allow_similar=True,
        )

        def similar(caller: str, _n: int) -> None:
            request.user_id = f"bench-{caller}"
            reply = stub.GenerateImage(request, metadata=service, timeout=30)
            if reply.source != pb.IMAGE_SOURCE_CACHE_SIMILAR:
                raise RuntimeError(f"expected a similar cache hit, got source {reply.source}")

        return similar
    if kind == "cache_stats":
        admin = _metadata(secret, "admin", "bench")
        request_stats = pb.GetCacheStatsRequest(page_size=100)
        return lambda _caller, _n: _ignore(
            stub.GetCacheStats(request_stats, metadata=admin, timeout=60)
        )
    raise ValueError(f"unknown operation kind {kind!r}")


# -- running a phase (inside the client process)


def _prepare(command: _Command, channel: Any) -> list[Callable[[int], None]]:
    """Each thread's call, built and warmed (all at once) before the phase's clock starts."""
    prepared: list[Callable[[int], None] | None] = [None] * command.threads
    failures: list[Exception] = []

    def build(index: int) -> None:
        caller = f"{command.nonce}-{command.process_index}-{index}"
        try:
            call = _call_factory(command.operation, channel)
            for warm in range(WARM_CALLS):
                call(caller, -1 - warm)
        except Exception as exc:  # re-raised below, in the client's main thread
            failures.append(exc)
            return
        prepared[index] = lambda n: call(caller, n)

    builders = [threading.Thread(target=build, args=(i,)) for i in range(command.threads)]
    for thread in builders:
        thread.start()
    for thread in builders:
        thread.join()
    if failures:
        raise failures[0]
    return [call for call in prepared if call is not None]


def _run(command: _Command, calls: list[Callable[[int], None]], start_at: float) -> PhaseResult:
    latencies: list[list[float]] = [[] for _ in calls]
    errors: list[str] = []
    lock = threading.Lock()
    # perf_counter on this process's clock for the shared wall-clock start.
    start = time.perf_counter() + (start_at - time.time())
    end = start + command.seconds
    total_threads = command.threads * command.processes

    def worker(index: int) -> None:
        call, mine = calls[index], latencies[index]
        slot = command.process_index * command.threads + index
        n = 0
        while True:
            if command.mode == "open":
                scheduled = start + (n * total_threads + slot) / command.rate
                if scheduled >= end:
                    return
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            else:
                now = time.perf_counter()
                if now < start:
                    time.sleep(start - now)
                scheduled = time.perf_counter()
                if scheduled >= end:
                    return
            try:
                call(n)
            except Exception as exc:  # counted and shown with the phase
                with lock:
                    errors.append(str(exc).splitlines()[0] if str(exc) else repr(exc))
            else:
                mine.append(time.perf_counter() - scheduled)
            n += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = max(time.perf_counter(), end)
    flat = [x for per in latencies for x in per]
    return PhaseResult(flat, finished - start, len(errors), errors[0] if errors else "")


def _client_main(connection: Connection) -> None:
    """Per phase: receive the command, prepare and answer "ready" (or a failed
    result), receive the shared start instant, run, send the result."""
    import grpc

    channels: dict[str, Any] = {}
    try:
        while True:
            command = connection.recv()
            if command is None:
                return
            target = command.operation.target
            if target not in channels:
                channels[target] = grpc.insecure_channel(target)
            try:
                calls = _prepare(command, channels[target])
            except Exception as exc:  # the parent reports it; the client lives on
                connection.send(PhaseResult([], command.seconds, 1, f"warm-up failed: {exc}"))
                continue
            connection.send("ready")
            start_at = connection.recv()
            connection.send(_run(command, calls, start_at))
    finally:
        for channel in channels.values():
            channel.close()


# -- the pool (in the bench's process)


class ClientPool:
    def __init__(self, processes: int = 2, threads: int = 8) -> None:
        self.processes = processes
        self.threads = threads
        self._connections: list[Connection] = []
        self._children: list[multiprocessing.process.BaseProcess] = []

    def __enter__(self) -> ClientPool:
        context = multiprocessing.get_context("spawn")
        for _ in range(self.processes):
            parent, child = context.Pipe()
            process = context.Process(target=_client_main, args=(child,), daemon=True)
            process.start()
            self._connections.append(parent)
            self._children.append(process)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.send(None)
        for process in self._children:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()

    def closed(self, operation: Operation, *, callers: int, seconds: float) -> PhaseResult:
        """Closed loop: `callers` in all, spread over the processes (1 caller: one process)."""
        return self._phase(operation, "closed", callers, seconds, 0.0)

    def open(self, operation: Operation, *, rate: float, seconds: float) -> PhaseResult:
        """Open loop at `rate` requests a second over every thread of every process."""
        return self._phase(operation, "open", self.processes * self.threads, seconds, rate)

    def _phase(
        self, operation: Operation, mode: str, callers: int, seconds: float, rate: float
    ) -> PhaseResult:
        used = min(self.processes, callers)
        connections = self._connections[:used]
        nonce = uuid.uuid4().hex[:8]
        for index, (connection, threads) in enumerate(
            zip(connections, _split(callers, used), strict=True)
        ):
            connection.send(_Command(operation, mode, threads, seconds, rate, index, used, nonce))
        answers = [connection.recv() for connection in connections]
        failed = [answer for answer in answers if isinstance(answer, PhaseResult)]
        # Every client answers before any starts, so a failed one leaves none waiting.
        start_at = time.time() + 0.2
        for connection, answer in zip(connections, answers, strict=True):
            if answer == "ready":
                connection.send(start_at)
        results = failed + [
            connection.recv()
            for connection, answer in zip(connections, answers, strict=True)
            if answer == "ready"
        ]
        return PhaseResult(
            [x for r in results for x in r.latencies],
            max(r.seconds for r in results),
            sum(r.errors for r in results),
            next((r.first_error for r in results if r.first_error), ""),
        )


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
