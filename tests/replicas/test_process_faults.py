"""Process faults with real processes on one PostgreSQL database: a
BudgetService killed (SIGKILL) while GenerateImage waits on it, an
ImageService killed mid-generation, and an ImageService stopped (SIGTERM)
with generations in flight."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as pb

from services.common.status import rich_details
from tests.image.conftest import CAKE, SOUP, generate_request
from tests.replicas.conftest import PASTA, REPLICAS
from tests.replicas.reading import ledger, reservations
from tests.support.fake_openai import FakeOpenAI
from tests.support.replicas import Replicas, running_replicas

pytestmark = REPLICAS

SALAD = pb.Recipe(
    recipe_id="r-salad",
    title="Tomato and Mozzarella Salad",
    ingredients=["4 ripe tomatoes", "250 g mozzarella", "fresh basil", "olive oil"],
)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def reason_of(error: grpc.RpcError) -> str:
    infos = [d for d in rich_details(error) if type(d).__name__ == "ErrorInfo"]
    return str(infos[0].reason) if infos else ""


# The observer's reads wait for its channel: after a BudgetService restart the
# channel reconnects on its own backoff, and a read is not the thing tested.
def reserved_now(replicas: Replicas, tokens, user: str) -> int:  # type: ignore[no-untyped-def]
    limits = replicas.budget.GetLimits(
        budget_pb.GetLimitsRequest(user_id=user),
        metadata=tokens.service(),
        timeout=30,
        wait_for_ready=True,
    )
    return sum(window.reserved_micros for window in limits.windows)


def reconciled(replicas: Replicas, tokens) -> None:  # type: ignore[no-untyped-def]
    check = replicas.budget.ReconcileLedger(
        budget_pb.ReconcileLedgerRequest(),
        metadata=tokens.admin(),
        timeout=60,
        wait_for_ready=True,
    )
    assert check.consistent, check.differences


def test_budget_service_killed_while_generate_image_waits_on_it(
    postgres_url, tmp_path, fake: FakeOpenAI, tokens
) -> None:
    with running_replicas(postgres_url, tmp_path, fake, budgets=1, images=1) as replicas:
        # The channel from ImageService to BudgetService is up.
        first = replicas.image.GenerateImage(
            generate_request(CAKE), metadata=tokens.user("u0"), timeout=60
        )
        assert first.source == pb.IMAGE_SOURCE_GENERATED
        budget = replicas.budgets[0]
        # Frozen: the call reaches its socket and waits there for an answer.
        budget.process.send_signal(signal.SIGSTOP)
        waiting = replicas.image.GenerateImage.future(
            generate_request(SOUP, request_id="r-1"), metadata=tokens.user("u1"), timeout=60
        )
        time.sleep(1.0)  # well within ImageService's 5 s budget deadline
        assert not waiting.done()
        budget.kill()
        with pytest.raises(grpc.RpcError) as refused:
            waiting.result()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(refused.value) == "BUDGET_UNAVAILABLE"
        assert len(fake.requests) == 1  # the first call's only: nothing generated

        replicas.restart_budget(0)
        assert [(user, state) for _, user, state in reservations(postgres_url)] == [
            ("u0", "committed")
        ]
        assert [(user, outcome) for _, user, outcome, _ in ledger(postgres_url)] == [
            ("u0", "generated")
        ]
        # The same request again, once ImageService has reconnected: served and
        # charged once.
        reply = retry_while_unavailable(
            lambda: replicas.image.GenerateImage(
                generate_request(SOUP, request_id="r-1"), metadata=tokens.user("u1"), timeout=60
            )
        )
        assert reply.source == pb.IMAGE_SOURCE_GENERATED
        assert len(fake.requests) == 2
        records = [(user, outcome) for _, user, outcome, _ in ledger(postgres_url)]
        assert records == [("u0", "generated"), ("u1", "generated")]
        assert reserved_now(replicas, tokens, "u1") == 0
        reconciled(replicas, tokens)


def retry_while_unavailable(
    call: Callable[[], pb.GenerateImageResponse],
) -> pb.GenerateImageResponse:
    """call() until it is not refused for an unreachable BudgetService (the
    channel reconnects with a backoff)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            assert reason_of(error) == "BUDGET_UNAVAILABLE"
            time.sleep(0.5)


def test_image_service_killed_mid_generation(
    postgres_url, tmp_path, fake: FakeOpenAI, tokens
) -> None:
    budget_env = {
        "RECIPEIMAGE_RESERVATION_TTL_SECONDS": "12",
        "RECIPEIMAGE_REAPER_INTERVAL_SECONDS": "0.2",
    }
    held = fake.held()
    fake.script(held)
    with running_replicas(
        postgres_url, tmp_path, fake, budgets=1, images=2, budget_env=budget_env
    ) as replicas:
        doomed, survivor = replicas.image_stub(0), replicas.image_stub(1)
        # Kept referenced: a collected future cancels its call.
        _in_flight = doomed.GenerateImage.future(
            generate_request(SOUP, request_id="r-kill"), metadata=tokens.user("u1")
        )
        assert fake.wait_for_requests(1, timeout=30)
        replicas.images[0].kill()
        [(key, user, state)] = reservations(postgres_url)
        assert (key, user, state) == ("r-kill", "u1", "held")
        assert reserved_now(replicas, tokens, "u1") > 0

        # While its money is held, a retry is told the attempt is in progress.
        with pytest.raises(grpc.RpcError) as in_progress:
            survivor.GenerateImage(
                generate_request(SOUP, request_id="r-kill"), metadata=tokens.user("u1")
            )
        assert in_progress.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(in_progress.value) == "REQUEST_IN_PROGRESS"

        # The reaper gives the money back after the TTL and records the attempt.
        wait_until(
            lambda: [state for _, _, state in reservations(postgres_url)] == ["expired"],
            "the reaper",
        )
        assert reserved_now(replicas, tokens, "u1") == 0
        assert ledger(postgres_url) == [("r-kill", "u1", "abandoned", 0)]
        with pytest.raises(grpc.RpcError) as failed:
            survivor.GenerateImage(
                generate_request(SOUP, request_id="r-kill"), metadata=tokens.user("u1")
            )
        assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(failed.value) == "REQUEST_ALREADY_FAILED"
        assert ledger(postgres_url) == [("r-kill", "u1", "abandoned", 0)]
        assert len(fake.requests) == 1

        # The budget is not stuck: the user's next image is generated and charged.
        reply = survivor.GenerateImage(
            generate_request(CAKE, request_id="r-next"), metadata=tokens.user("u1"), timeout=60
        )
        assert reply.source == pb.IMAGE_SOURCE_GENERATED and reply.cost_micros > 0
        assert ledger(postgres_url) == [
            ("r-kill", "u1", "abandoned", 0),
            ("r-next", "u1", "generated", reply.cost_micros),
        ]
        reconciled(replicas, tokens)


def test_sigterm_finishes_generations_in_flight_and_refuses_new_calls(
    postgres_url, tmp_path, fake: FakeOpenAI, tokens
) -> None:
    holds = [fake.held() for _ in range(3)]
    fake.script(*holds)
    image_env = {"RECIPEIMAGE_SHUTDOWN_GRACE_SECONDS": "20"}
    with running_replicas(
        postgres_url, tmp_path, fake, budgets=1, images=2, image_env=image_env
    ) as replicas:
        draining = replicas.image_stub(0)
        in_flight = [
            draining.GenerateImage.future(
                generate_request(recipe), metadata=tokens.user(f"u{n}"), timeout=60
            )
            for n, recipe in enumerate((SOUP, CAKE, PASTA))
        ]
        assert fake.wait_for_requests(3, timeout=30)
        stopping = replicas.images[0]
        stopping.process.send_signal(signal.SIGTERM)
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(stopping.target))
        wait_until(lambda: not serving(health), f"the graceful shutdown: {stopping.logs}")

        # New calls are refused while it drains; the other replica serves them.
        with pytest.raises(grpc.RpcError) as refused:
            draining.GenerateImage(generate_request(SOUP), metadata=tokens.user("late"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        moved = replicas.image.GenerateImage(
            generate_request(SALAD), metadata=tokens.user("late"), timeout=60
        )
        assert moved.source == pb.IMAGE_SOURCE_GENERATED
        assert stopping.process.poll() is None
        for hold in holds:
            assert hold.gate is not None
            hold.gate.set()
        replies = [future.result() for future in in_flight]
        assert [reply.source for reply in replies] == [pb.IMAGE_SOURCE_GENERATED] * 3
        assert stopping.process.wait(30) == 0
        assert stopping.messages("stopped")

        assert [state for _, _, state in reservations(postgres_url)] == ["committed"] * 4
        records = sorted((user, outcome, cost) for _, user, outcome, cost in ledger(postgres_url))
        assert records == [("late", "generated", moved.cost_micros)] + [
            (f"u{n}", "generated", replies[n].cost_micros) for n in range(3)
        ]
        assert all(reply.cost_micros > 0 for reply in replies)
        reconciled(replicas, tokens)


def serving(health: health_pb2_grpc.HealthStub) -> bool:
    try:
        answer = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError:
        return False
    return answer.status == health_pb2.HealthCheckResponse.SERVING
