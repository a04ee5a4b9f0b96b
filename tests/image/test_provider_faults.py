"""The provider slow, timing out, answering 429 and 500 under concurrent
GenerateImage misses (a real fake OpenAI server, tests/support/fake_openai.py):

- generations never starve cache hits: with every generation slot held by a
  provider call the fake keeps open, a hit is answered while they are all
  still held, and a further miss is shed at once (GENERATION_SLOTS_EXHAUSTED,
  nothing held, charged or recorded) instead of queueing for a thread;
- every failure gives its money back: no reservation is left held, each
  attempt has its one usage record (a failed one at cost 0, a generated one at
  the cost its reported usage prices), and ReconcileLedger is clean.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import grpc
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as pb

from services.budget.domain.limits import TierLimits
from services.common.prices import TokenUsage
from services.common.status import rich_details
from services.image.settings import DEFAULT_MODEL
from tests.image.conftest import generate_request, ledger, reservation_states, user_daily
from tests.support.budget_server import tiers
from tests.support.fake_openai import DEFAULT_USAGE, FakeOpenAI
from tests.support.image_server import RunningPair, running_openai_pair

# Room for every attempt of a test: only the provider may refuse one.
ROOMY = {"tiers": tiers(free=TierLimits(100_000_000, 1_000_000_000, 80_000))}
WAIT = 30.0
# As long as the prompts ImageService builds, so the fake's reported usage
# (tests/support/fake_openai.py DEFAULT_USAGE) fits the hold of a caller's prompt.
DISH_PROMPT = (
    "A overhead photograph of a rustic bowl of broccoli soup with coconut milk, "
    "garnished with toasted garlic and fresh herbs, served on a weathered wooden "
    "table in soft natural window light, shallow depth of field, appetizing, "
    "editorial food photography, realistic colors, no text, no people"
)

Outcome = tuple[grpc.StatusCode, pb.GenerateImageResponse | grpc.RpcError]


def own_dish(pair: RunningPair, tokens, number: int, request_id: str) -> Callable[[], Outcome]:  # type: ignore[no-untyped-def]
    """A miss of its own (a caller's prompt no other call shares), as a call
    that returns its code and its reply or error."""
    request = generate_request(prompt=f"{number}: {DISH_PROMPT}", request_id=request_id)

    def call() -> Outcome:
        try:
            return grpc.StatusCode.OK, pair.image.GenerateImage(
                request, metadata=tokens.user("u1"), timeout=WAIT
            )
        except grpc.RpcError as error:
            return error.code(), error

    return call


def reason_of(error: object) -> str:
    assert isinstance(error, grpc.RpcError)
    infos = [d for d in rich_details(error) if type(d).__name__ == "ErrorInfo"]
    return str(infos[0].reason) if infos else ""


def reconciled(pair: RunningPair, tokens) -> budget_pb.ReconcileLedgerResponse:  # type: ignore[no-untyped-def]
    return pair.budget.stub.ReconcileLedger(
        budget_pb.ReconcileLedgerRequest(), metadata=tokens.admin()
    )


def generated_cost(prices) -> int:  # type: ignore[no-untyped-def]
    usage = TokenUsage(**DEFAULT_USAGE)
    return int(prices.model(DEFAULT_MODEL).actual_cost_micros("medium", "1024x1024", usage))


def test_a_cache_hit_is_answered_while_every_generation_slot_is_held(
    database_url, authenticator, clock, fake: FakeOpenAI, tokens, prices
) -> None:
    """8 RPC threads, 4 generation slots, 8 concurrent misses the fake holds:
    4 generate (held), 4 are shed at once, and a hit still gets a thread. Were
    the slots the threads, the 8 misses would hold all 8 and the hit would
    queue until its deadline."""
    with running_openai_pair(
        database_url,
        authenticator,
        fake,
        clock=clock,
        max_workers=8,
        max_concurrent_generations=4,
        openai_timeout_seconds=60,
        budget_overrides=ROOMY,
    ) as pair:
        primed = pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
        assert primed.source == pb.IMAGE_SOURCE_GENERATED
        held = [fake.held() for _ in range(8)]
        fake.script(*held)
        calls = [own_dish(pair, tokens, i, f"slow-{i}") for i in range(8)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(call) for call in calls]
            try:
                shed = first_done(futures, 4)
                assert fake.wait_for_requests(1 + 4, timeout=WAIT)
                generating = [f for f in futures if f not in shed]

                hit = pair.image.GenerateImage(
                    generate_request(), metadata=tokens.user("u1"), timeout=WAIT
                )

                assert hit.source == pb.IMAGE_SOURCE_CACHE_EXACT
                assert hit.image.image_id == primed.image.image_id
                # Answered while every slot is still held by a provider call.
                assert not any(f.done() for f in generating)
                assert len(fake.requests) == 1 + 4
            finally:
                for answer in held:
                    assert answer.gate is not None
                    answer.gate.set()
            outcomes = [f.result(timeout=WAIT) for f in futures]

        pair.app.settle_pending(clock.now())
        shed_codes = [f.result()[0] for f in shed]
        assert shed_codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 4
        assert {reason_of(f.result()[1]) for f in shed} == {"GENERATION_SLOTS_EXHAUSTED"}
        assert Counter(code for code, _ in outcomes) == {
            grpc.StatusCode.OK: 4,
            grpc.StatusCode.RESOURCE_EXHAUSTED: 4,
        }
        # A shed miss held, charged and recorded nothing.
        records = ledger(pair)
        shed_ids = {calls_request_id(futures, f) for f in shed}
        assert not shed_ids & {r.request_id for r in records}
        assert sorted(r.outcome for r in records) == ["cache_hit_exact"] + ["generated"] * 5
        assert reservation_states(pair) == ["committed"] * 5
        daily = user_daily(pair, tokens)
        assert (daily.spent_micros, daily.reserved_micros) == (5 * generated_cost(prices), 0)
        assert reconciled(pair, tokens).consistent


def first_done(futures: list[Future[Outcome]], count: int) -> list[Future[Outcome]]:
    """The first `count` futures to finish (the shed misses: the rest are held)."""
    done: set[Future[Outcome]] = set()
    pending = set(futures)
    while len(done) < count:
        finished, pending = wait(pending, timeout=WAIT, return_when=FIRST_COMPLETED)
        assert finished, f"only {len(done)} calls finished; {count} should have been shed"
        done |= finished
    assert len(done) == count, "more calls finished than were shed: a held call ended"
    return [f for f in futures if f in done]


def calls_request_id(futures: list[Future[Outcome]], future: Future[Outcome]) -> str:
    return f"slow-{futures.index(future)}"


def test_provider_failures_under_load_release_their_money_and_reconcile(
    database_url, authenticator, clock, fake: FakeOpenAI, tokens, prices
) -> None:
    """16 concurrent misses while the provider answers a quarter of them, rate
    limits a quarter (429), fails a quarter (500) and is too slow for a
    quarter (the client times out): each call gets its documented code, and
    the ledger has one record an attempt, the failures at cost 0 with their
    money given back."""
    answers = [
        *[fake.success()] * 4,
        *[fake.rate_limited(retry_after=None)] * 4,
        *[fake.server_error()] * 4,
        *[fake.slow(30)] * 4,
    ]
    # Interleaved, so failures and successes are in flight together.
    fake.script(*[answers[i + 4 * k] for i in range(4) for k in range(4)])
    with running_openai_pair(
        database_url,
        authenticator,
        fake,
        clock=clock,
        max_workers=24,
        max_concurrent_generations=16,
        openai_max_retries=0,
        openai_timeout_seconds=1.0,
        budget_overrides=ROOMY,
    ) as pair:
        calls = [own_dish(pair, tokens, i, f"load-{i}") for i in range(16)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            outcomes = dict(
                zip(
                    (f"load-{i}" for i in range(16)),
                    pool.map(lambda call: call(), calls),
                    strict=True,
                )
            )
        pair.app.settle_pending(clock.now())

        assert Counter(code for code, _ in outcomes.values()) == {
            grpc.StatusCode.OK: 4,
            grpc.StatusCode.RESOURCE_EXHAUSTED: 4,
            grpc.StatusCode.UNAVAILABLE: 4,
            grpc.StatusCode.DEADLINE_EXCEEDED: 4,
        }
        reasons = Counter(reason_of(error) for code, error in outcomes.values() if code.value[0])
        assert reasons == {
            "PROVIDER_RATE_LIMITED": 4,
            "PROVIDER_UNAVAILABLE": 4,
            "PROVIDER_TIMEOUT": 4,
        }
        cost = generated_cost(prices)
        records = {r.request_id: r for r in ledger(pair)}
        assert set(records) == set(outcomes), "one usage record an attempt"
        for request_id, (code, answer) in outcomes.items():
            record = records[request_id]
            if code == grpc.StatusCode.OK:
                assert isinstance(answer, pb.GenerateImageResponse)
                assert answer.cost_micros == cost
                assert (record.outcome, record.cost_micros) == ("generated", cost)
            else:
                assert (record.outcome, record.success, record.cost_micros) == (
                    "failed",
                    False,
                    0,
                ), request_id
                assert reason_of(answer) in record.error_message
        assert Counter(reservation_states(pair)) == {"committed": 4, "released": 12}
        daily = user_daily(pair, tokens)
        assert (daily.spent_micros, daily.reserved_micros) == (4 * cost, 0)
        report = reconciled(pair, tokens)
        assert report.consistent, list(report.differences)
