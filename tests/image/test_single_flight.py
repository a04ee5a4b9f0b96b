"""Single flight: concurrent identical misses make one generation and one charge,
from threads on one ImageService and across two ImageService replicas sharing a
database, on SQLite and PostgreSQL. The generation is held at the fake OpenAI
server until every request is in. A held lease is renewed while its generation
runs, and the lease of a process killed mid-generation lapses within one TTL."""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from recipeimage.image.v1 import image_service_pb2 as pb
from recipeimage.image.v1 import image_service_pb2_grpc
from sqlalchemy import select

from services.image.domain.cache_policy import cache_key
from services.image.recipes.analyzer import analyze
from services.image.recipes.prompts import build_prompt
from services.image.settings import DEFAULT_MODEL, ImageSettings
from services.image.store.leases import LeaseRepository
from services.image.store.models import GenerationLease
from tests.image.conftest import SOUP, generate_request, ledger, reservation_states, user_daily
from tests.support.budget_server import ManualClock
from tests.support.fake_openai import FakeOpenAI
from tests.support.image_server import RunningPair, running_image, running_pair
from tests.support.replicas import image_process_env
from tests.support.service_processes import service_process

CALLERS = 4


def soup_key(prices) -> str:  # type: ignore[no-untyped-def]
    """The cache key ImageService computes for SOUP at the defaults."""
    from tests.image.conftest import plain_recipe

    recipe = plain_recipe(
        {
            "title": SOUP.title,
            "ingredients": list(SOUP.ingredients),
            "instructions": list(SOUP.instructions),
            "category": list(SOUP.categories),
        }
    )
    prompt = build_prompt(analyze(recipe), prices.model(DEFAULT_MODEL).max_prompt_chars)
    return cache_key(DEFAULT_MODEL, "1024x1024", "medium", prompt)


def leases(pair: RunningPair) -> list[GenerationLease]:
    with pair.app.sessions.begin() as session:
        rows = list(session.scalars(select(GenerationLease)))
        session.expunge_all()
        return rows


def wait_until(condition, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def openai_pair(database_url, authenticator, clock, fake):  # type: ignore[no-untyped-def]
    with running_pair(
        database_url,
        authenticator,
        clock=clock,
        provider="openai",
        openai_base_url=fake.base_url,
        openai_max_retries=0,
        single_flight_wait_seconds=10.0,
    ) as pair:
        yield pair


def call_all(stubs, tokens, users):  # type: ignore[no-untyped-def]
    """GenerateImage for SOUP from every user at once, spread over the stubs;
    the calls' futures (gRPC's own, so nothing waits for them here)."""
    return [
        stubs[i % len(stubs)].GenerateImage.future(
            generate_request(), metadata=tokens.user(user), timeout=20
        )
        for i, user in enumerate(users)
    ]


def assert_one_generation_and_one_charge(pair, tokens, fake, replies) -> None:  # type: ignore[no-untyped-def]
    sources = sorted(r.source for r in replies)
    assert sources == [pb.IMAGE_SOURCE_GENERATED] + [pb.IMAGE_SOURCE_CACHE_EXACT] * (
        len(replies) - 1
    )
    assert len({r.image.image_id for r in replies}) == 1
    assert len(fake.requests) == 1
    outcomes = sorted(r.outcome for r in ledger(pair))
    assert outcomes == ["cache_hit_exact"] * (len(replies) - 1) + ["generated"]
    assert reservation_states(pair) == ["committed"]
    cost = next(r.cost_micros for r in replies if r.source == pb.IMAGE_SOURCE_GENERATED)
    saved = [r.cost_saved_micros for r in replies if r.source == pb.IMAGE_SOURCE_CACHE_EXACT]
    assert saved == [cost] * (len(replies) - 1)
    assert leases(pair) == []


def test_concurrent_identical_misses_make_one_generation_and_one_charge(
    openai_pair, fake: FakeOpenAI, tokens
) -> None:
    held = fake.held()
    fake.script(held)
    users = [f"u{i}" for i in range(CALLERS)]
    futures = call_all([openai_pair.image], tokens, users)
    assert fake.wait_for_requests(1)
    # Everyone else is waiting on the lease, not generating.
    time.sleep(0.3)
    assert len(fake.requests) == 1
    assert len(leases(openai_pair)) == 1
    assert held.gate is not None
    held.gate.set()
    replies = [f.result() for f in futures]

    assert_one_generation_and_one_charge(openai_pair, tokens, fake, replies)
    spent = sum(user_daily(openai_pair, tokens, u).spent_micros for u in users)
    assert spent == max(r.cost_micros for r in replies)  # one user paid, once

    # Each miss but the generator's waited and was served the generated image.
    metrics = openai_pair.app.metrics.registry
    image = {"service": "image"}
    misses = metrics.get_sample_value("recipeimage_image_cache_misses_total", image)
    hits = metrics.get_sample_value(
        "recipeimage_image_cache_hits_total", {**image, "kind": "exact"}
    )
    served = metrics.get_sample_value(
        "recipeimage_image_single_flight_waits_total", {**image, "outcome": "served"}
    )
    waited = metrics.get_sample_value("recipeimage_image_single_flight_wait_seconds_count", image)
    assert (misses or 0) + (hits or 0) == CALLERS
    assert served == waited == (misses or 0) - 1 > 0


def test_two_replicas_sharing_a_database_make_one_generation(
    openai_pair, fake: FakeOpenAI, tokens, database_url, authenticator, clock
) -> None:
    held = fake.held()
    fake.script(held)
    with running_image(
        database_url,
        authenticator,
        openai_pair.budget.target,
        openai_pair.store_dir,
        provider="openai",
        openai_base_url=fake.base_url,
        openai_max_retries=0,
        clock=clock,
        single_flight_wait_seconds=10.0,
    ) as replica:
        users = [f"u{i}" for i in range(CALLERS)]
        futures = call_all([openai_pair.image, replica.image], tokens, users)
        assert fake.wait_for_requests(1)
        time.sleep(0.3)
        assert len(fake.requests) == 1
        assert held.gate is not None
        held.gate.set()
        replies = [f.result() for f in futures]
        assert_one_generation_and_one_charge(openai_pair, tokens, fake, replies)
        # Either replica serves the image.
        for stub in (openai_pair.image, replica.image):
            stub.GetImage(
                pb.GetImageRequest(image_id=replies[0].image.image_id),
                metadata=tokens.user("u9"),
            )


def test_a_failed_generation_frees_the_lease_for_a_waiter(
    openai_pair, fake: FakeOpenAI, tokens
) -> None:
    refusal = fake.held(fake.server_error(503))
    fake.script(refusal)  # then successes
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(
            openai_pair.image.GenerateImage, generate_request(), metadata=tokens.user("a")
        )
        assert fake.wait_for_requests(1)
        second = pool.submit(
            openai_pair.image.GenerateImage, generate_request(), metadata=tokens.user("b")
        )
        time.sleep(0.2)
        assert refusal.gate is not None
        refusal.gate.set()
        with pytest.raises(grpc.RpcError) as failed:
            first.result(timeout=10)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        reply = second.result(timeout=10)
    assert reply.source == pb.IMAGE_SOURCE_GENERATED
    assert len(fake.requests) == 2
    assert sorted(reservation_states(openai_pair)) == ["committed", "released"]
    assert leases(openai_pair) == []


def test_a_crashed_replicas_lease_is_taken_over_when_it_expires(
    database_url, authenticator, clock, tokens, prices
) -> None:
    with running_pair(
        database_url, authenticator, clock=clock, single_flight_wait_seconds=10.0
    ) as pair:
        key = soup_key(prices)
        with pair.app.sessions.begin() as session:
            session.add(
                GenerationLease(
                    cache_key=key,
                    owner="a-replica-that-crashed",
                    acquired_at=clock.now(),
                    expires_at=clock.now() + timedelta(minutes=10),
                )
            )
        results: list[pb.GenerateImageResponse] = []
        thread = threading.Thread(
            target=lambda: results.append(
                pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
            )
        )
        thread.start()
        time.sleep(0.3)
        assert results == []  # waiting on the live lease
        clock.advance(timedelta(minutes=10))
        thread.join(10)
        [reply] = results
        assert reply.source == pb.IMAGE_SOURCE_GENERATED
        assert [r.outcome for r in ledger(pair)] == ["generated"]
        assert leases(pair) == []


def test_a_waiter_that_waits_out_its_bound_generates_itself(
    database_url, authenticator, clock, tokens, prices
) -> None:
    with running_pair(
        database_url, authenticator, clock=clock, single_flight_wait_seconds=0.3
    ) as pair:
        with pair.app.sessions.begin() as session:
            session.add(
                GenerationLease(
                    cache_key=soup_key(prices),
                    owner="a-slow-replica",
                    acquired_at=clock.now(),
                    expires_at=clock.now() + timedelta(minutes=10),
                )
            )
        started = time.monotonic()
        reply = pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        assert time.monotonic() - started >= 0.3
        assert reply.source == pb.IMAGE_SOURCE_GENERATED
        # The other replica's lease is its own to release.
        assert [lease.owner for lease in leases(pair)] == ["a-slow-replica"]


@dataclass
class ReplicaProcess:
    image: image_service_pb2_grpc.ImageServiceStub
    process: subprocess.Popen[str]


@contextmanager
def replica_process(  # type: ignore[no-untyped-def]
    database_url: str, pair: RunningPair, fake: FakeOpenAI, server_processes: int = 1
):
    """`recipeimage-image` in a process of its own on the pair's database, BudgetService
    and image store, with the default lease: a replica as production runs one."""
    env = image_process_env(
        database_url,
        pair.budget.target,
        pair.store_dir,
        fake,
        {"RECIPEIMAGE_SERVER_PROCESSES": str(server_processes)},
    )
    with service_process("image", env) as replica:
        channel = grpc.insecure_channel(replica.target)
        try:
            yield ReplicaProcess(image_service_pb2_grpc.ImageServiceStub(channel), replica.process)
        finally:
            channel.close()


def test_a_replica_in_another_process_shares_the_generation(
    database_url, authenticator, fake: FakeOpenAI, tokens
) -> None:
    held = fake.held()
    fake.script(held)
    # The system clock on both sides: leases and entries must mean the same instant.
    with (
        running_pair(
            database_url,
            authenticator,
            provider="openai",
            openai_base_url=fake.base_url,
            openai_max_retries=0,
            single_flight_wait_seconds=10.0,
        ) as pair,
        # Two server processes: the replica's workers share the port.
        replica_process(database_url, pair, fake, server_processes=2) as other,
    ):
        users = [f"u{i}" for i in range(CALLERS)]
        futures = call_all([pair.image, other.image], tokens, users)
        assert fake.wait_for_requests(1, timeout=10)
        time.sleep(0.5)
        assert len(fake.requests) == 1
        assert held.gate is not None
        held.gate.set()
        replies = [f.result() for f in futures]
        assert_one_generation_and_one_charge(pair, tokens, fake, replies)


def test_a_lease_is_renewed_only_by_its_owner(pair: RunningPair, clock) -> None:  # type: ignore[no-untyped-def]
    ttl = timedelta(seconds=30)
    start = clock.now()
    with pair.app.sessions.begin() as session:
        assert LeaseRepository(session).claim("k", "me", start, ttl)
    later = clock.advance(timedelta(seconds=10))
    with pair.app.sessions.begin() as session:
        assert not LeaseRepository(session).renew("k", "another", later, ttl)
    [lease] = leases(pair)
    assert (lease.owner, lease.expires_at) == ("me", start + ttl)
    with pair.app.sessions.begin() as session:
        assert LeaseRepository(session).renew("k", "me", later, ttl)
    [lease] = leases(pair)
    assert (lease.owner, lease.expires_at) == ("me", later + ttl)


def test_a_generation_longer_than_the_lease_keeps_it_renewed(
    database_url, authenticator, fake: FakeOpenAI, tokens
) -> None:
    """A one-second lease and a two-second generation: the heartbeat keeps the
    lease, so the identical request waits for the one image instead of taking
    the lease over and paying for a second. The system clock: the heartbeat and
    the waiter both run in real time."""
    fake.script(fake.slow(2.0))
    with running_pair(
        database_url,
        authenticator,
        provider="openai",
        openai_base_url=fake.base_url,
        openai_max_retries=0,
        generation_lease_seconds=1.0,
        single_flight_wait_seconds=10.0,
    ) as pair:
        first = pair.image.GenerateImage.future(
            generate_request(), metadata=tokens.user("u1"), timeout=20
        )
        assert fake.wait_for_requests(1)
        second = pair.image.GenerateImage.future(
            generate_request(), metadata=tokens.user("u2"), timeout=20
        )
        time.sleep(1.5)  # past the lease's first expiry
        [lease] = leases(pair)
        assert lease.expires_at > lease.acquired_at + timedelta(seconds=1)  # renewed
        replies = [first.result(), second.result()]
        assert_one_generation_and_one_charge(pair, tokens, fake, replies)


def test_the_lease_of_a_killed_replica_is_taken_over_within_one_ttl(
    database_url, authenticator, fake: FakeOpenAI, tokens
) -> None:
    """A replica process with the default lease is killed mid-generation; an
    identical request on another replica waits only until the lease's one TTL
    has passed (on its injected clock), then generates and is charged once."""
    ttl = timedelta(seconds=ImageSettings.from_env({}).generation_lease_seconds)
    assert ttl <= timedelta(seconds=60)
    fake.script(fake.held())  # never answered: its replica dies first
    clock = ManualClock(datetime.now(UTC))
    with (
        running_pair(
            database_url,
            authenticator,
            clock=clock,
            provider="openai",
            openai_base_url=fake.base_url,
            openai_max_retries=0,
            single_flight_wait_seconds=10.0,
        ) as pair,
        replica_process(database_url, pair, fake) as doomed,
    ):
        # Kept referenced: a collected future cancels its call.
        _doomed_call = doomed.image.GenerateImage.future(
            generate_request(), metadata=tokens.user("u1")
        )
        assert fake.wait_for_requests(1, timeout=10)
        doomed.process.kill()
        doomed.process.wait(10)
        [lease] = leases(pair)
        assert lease.expires_at - lease.acquired_at == ttl

        clock.set(lease.acquired_at)
        results: list[pb.GenerateImageResponse] = []
        waiter = threading.Thread(
            target=lambda: results.append(
                pair.image.GenerateImage(generate_request(), metadata=tokens.user("u2"))
            )
        )
        waiter.start()
        time.sleep(0.3)
        assert results == []  # the dead replica's lease is still live
        clock.set(lease.acquired_at + ttl)
        waiter.join(5)
        [reply] = results
        assert reply.source == pb.IMAGE_SOURCE_GENERATED
        assert len(fake.requests) == 2
        assert [(r.user_id, r.outcome) for r in ledger(pair)] == [("u2", "generated")]
        assert leases(pair) == []
