"""The GenerateImage use case with a fake BudgetService, on SQLite and PostgreSQL:
what it reserves, commits, releases and records, and what the cache holds."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from services.common.db import create_db_engine, create_sessions
from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    Unavailable,
)
from services.common.prices import PriceTable, estimate_prompt_tokens
from services.image.analyzer import Recipe
from services.image.generation import (
    Images,
    Outcome,
    Reservation,
    ReservationState,
    Source,
    Usage,
)
from services.image.models import CacheEntry
from services.image.providers import GeneratedImage
from services.image.providers.offline import OfflineProvider
from services.image.settings import DEFAULT_MODEL
from services.image.storage import ImageStore
from services.image.validation import Defaults, GenerateCommand
from tests.image.conftest import T0
from tests.support.budget_server import ManualClock

TTL = timedelta(days=30)
SOUP = Recipe(title="Tomato Soup", ingredients=("6 ripe tomatoes",), recipe_id="r1")


@dataclass
class FakeBudget:
    """BudgetService's contract in memory: reservations by key, records by request id."""

    refuse: QuotaExceeded | None = None
    unavailable: bool = False
    fail_release: bool = False
    # Run once at the start of the next reserve: what another replica does meanwhile.
    meanwhile: Callable[[], object] | None = None
    reservations: dict[str, Reservation] = field(default_factory=dict)
    records: dict[str, Usage] = field(default_factory=dict)
    commits: list[tuple[str, int]] = field(default_factory=list)
    reserved: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self) -> None:
        if self.unavailable:
            raise Unavailable("BudgetService cannot be reached", reason="BUDGET_UNAVAILABLE")

    def reserve(self, user_id: str, amount_micros: int, idempotency_key: str) -> Reservation:
        self._check()
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        with self.lock:
            if idempotency_key in self.reservations:
                existing = self.reservations[idempotency_key]
                return Reservation(existing.reservation_id, existing.state, amount_micros, True)
            if self.refuse is not None:
                raise self.refuse
            reservation = Reservation(
                f"res-{idempotency_key}", ReservationState.HELD, amount_micros, False
            )
            self.reservations[idempotency_key] = reservation
            self.reserved.append(amount_micros)
            return reservation

    def _settle(self, reservation_id: str, state: ReservationState, usage: Usage) -> None:
        with self.lock:
            key = next(
                k for k, r in self.reservations.items() if r.reservation_id == reservation_id
            )
            held = self.reservations[key]
            self.reservations[key] = Reservation(
                held.reservation_id, state, held.amount_micros, False
            )
            self.records.setdefault(usage.request_id, usage)

    def commit(self, reservation_id: str, actual_cost_micros: int, usage: Usage) -> None:
        self._check()
        self.commits.append((reservation_id, actual_cost_micros))
        self._settle(reservation_id, ReservationState.COMMITTED, usage)

    def release(self, reservation_id: str, usage: Usage) -> None:
        self._check()
        if self.fail_release:
            raise Unavailable("BudgetService cannot be reached", reason="BUDGET_UNAVAILABLE")
        self._settle(reservation_id, ReservationState.RELEASED, usage)

    def record_usage(self, usage: Usage) -> bool:
        self._check()
        with self.lock:
            if usage.request_id in self.records:
                return True
            self.records[usage.request_id] = usage
            return False

    def outcomes(self) -> list[Outcome]:
        return [u.outcome for u in self.records.values()]


class CountingProvider:
    """The offline provider, counting calls; `fail` makes the next call raise it."""

    name = "offline"

    def __init__(self) -> None:
        self.calls = 0
        self.fail: Exception | None = None
        self.distinct = False

    def generate(self, prompt: str, model: str, size: str, quality: str) -> GeneratedImage:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        if self.distinct:  # different bytes on every call
            prompt = f"{prompt} #{self.calls}"
        return OfflineProvider().generate(prompt, model, size, quality)

    def close(self) -> None:
        pass


@dataclass
class World:
    images: Images
    budget: FakeBudget
    provider: CountingProvider
    clock: ManualClock

    def entries(self) -> list[CacheEntry]:
        with self.images.sessions.begin() as session:
            rows = list(session.scalars(select(CacheEntry).order_by(CacheEntry.id)))
            session.expunge_all()
            return rows


@pytest.fixture
def world(database_url: str, tmp_path: Path, prices: PriceTable) -> Iterator[World]:
    engine = create_db_engine(database_url, pool_size=4)
    budget, provider, clock = FakeBudget(), CountingProvider(), ManualClock(T0)
    images = Images(
        sessions=create_sessions(engine),
        store=ImageStore(tmp_path / "images"),
        budget=budget,
        provider=provider,
        prices=prices,
        defaults=Defaults(DEFAULT_MODEL, "1024x1024", "medium"),
        cache_ttl=TTL,
        clock=clock,
    )
    yield World(images, budget, provider, clock)
    engine.dispose()


def soup(**fields: object) -> GenerateCommand:
    return GenerateCommand(user_id="u1", recipe=SOUP, **fields)  # type: ignore[arg-type]


def test_a_miss_reserves_the_most_it_can_cost_and_commits_the_per_image_figure(
    world: World, prices: PriceTable
) -> None:
    result = world.images.generate(soup(request_id="a1"))

    price = prices.model(DEFAULT_MODEL)
    assert world.budget.reserved == [
        price.max_cost_micros("medium", "1024x1024", estimate_prompt_tokens(result.prompt))
    ]
    assert world.budget.commits == [("res-a1", price.per_image_micros("medium", "1024x1024"))]
    assert result.source is Source.GENERATED
    assert result.cost_micros == price.per_image_micros("medium", "1024x1024")
    record = world.budget.records["a1"]
    assert (record.outcome, record.success, record.provider) == (Outcome.GENERATED, True, "offline")
    assert (record.input_tokens, record.output_tokens) == (0, 0)

    [entry] = world.entries()
    assert (entry.model, entry.size, entry.quality, entry.prompt) == (
        DEFAULT_MODEL,
        "1024x1024",
        "medium",
        result.prompt,
    )
    assert entry.context["dish"] == "tomato soup" and entry.context["course"] == "soup"
    assert entry.image_id == result.image.image_id
    assert (entry.cost_micros, entry.exact_hits, entry.cost_saved_micros) == (
        result.cost_micros,
        0,
        0,
    )
    assert (entry.created_at, entry.expires_at) == (T0, T0 + TTL)


def test_hits_count_uses_and_savings_but_a_retried_request_id_does_not(world: World) -> None:
    generated = world.images.generate(soup())
    first = world.images.generate(soup(request_id="h1"))
    world.images.generate(soup(request_id="h2"))
    retried = world.images.generate(soup(request_id="h1"))

    assert first.source is retried.source is Source.CACHE_EXACT
    assert (first.cost_micros, first.cost_saved_micros) == (0, generated.cost_micros)
    assert world.provider.calls == 1
    [entry] = world.entries()
    assert (entry.exact_hits, entry.cost_saved_micros) == (2, 2 * generated.cost_micros)
    assert entry.last_hit_at == T0
    hit = world.budget.records["h1"]
    assert (hit.outcome, hit.cached, hit.cache_hit, hit.cost_saved_micros) == (
        Outcome.CACHE_HIT_EXACT,
        True,
        "exact",
        generated.cost_micros,
    )
    stats = world.images.cache_stats()
    assert (stats.entries, stats.exact_hits, stats.misses) == (1, 2, 1)
    assert stats.total_cost_saved_micros == 2 * generated.cost_micros
    assert stats.hit_rate == pytest.approx(2 / 3)


def test_an_expired_entry_is_not_served_and_is_replaced(world: World) -> None:
    world.images.generate(soup())
    world.images.generate(soup())  # a hit
    world.clock.advance(TTL)

    again = world.images.generate(soup())
    assert again.source is Source.GENERATED
    assert world.provider.calls == 2
    [entry] = world.entries()
    assert (entry.exact_hits, entry.cost_saved_micros) == (0, 0)
    assert entry.expires_at == T0 + 2 * TTL
    assert world.images.cache_stats().entries == 1


def test_live_entries_are_counted_in_sql_and_expired_ones_are_not(world: World) -> None:
    world.images.generate(soup())
    world.clock.advance(timedelta(days=10))
    world.images.generate(soup(size="1536x1024"))
    world.clock.advance(timedelta(days=25))  # the first has expired, the second lives
    stats = world.images.cache_stats()
    assert (stats.entries, stats.misses, stats.exact_hits) == (1, 2, 0)
    assert stats.hit_rate == 0.0


def test_a_refusal_is_recorded_and_passed_on(world: World) -> None:
    world.budget.refuse = QuotaExceeded(
        "over", reason="DAILY_LIMIT_EXCEEDED", subject="user:u1", retry_after=timedelta(hours=1)
    )
    with pytest.raises(QuotaExceeded) as raised:
        world.images.generate(soup(request_id="r1"))
    assert raised.value is world.budget.refuse
    record = world.budget.records["r1"]
    assert (record.outcome, record.cost_micros, record.error_message) == (
        Outcome.REFUSED,
        0,
        "over",
    )
    assert world.provider.calls == 0


def test_without_budget_service_nothing_is_generated(world: World) -> None:
    world.budget.unavailable = True
    with pytest.raises(Unavailable):
        world.images.generate(soup())
    assert world.provider.calls == 0
    assert world.entries() == []


def test_a_provider_failure_releases_with_a_failed_record(world: World) -> None:
    world.provider.fail = Unavailable("down", reason="PROVIDER_UNAVAILABLE")
    with pytest.raises(Unavailable):
        world.images.generate(soup(request_id="f1"))
    assert world.budget.reservations["f1"].state is ReservationState.RELEASED
    record = world.budget.records["f1"]
    assert (record.outcome, record.success) == (Outcome.FAILED, False)
    assert record.error_message == "PROVIDER_UNAVAILABLE: down"
    assert world.entries() == []


def test_a_failed_release_does_not_hide_the_providers_error(world: World) -> None:
    world.provider.fail = RuntimeError("bug")
    world.budget.fail_release = True
    with pytest.raises(RuntimeError, match="bug"):
        world.images.generate(soup(request_id="f2"))


def test_an_image_that_cannot_be_stored_is_still_paid_for(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(data: bytes, content_type: str) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(world.images.store, "put", full_disk)
    with pytest.raises(OSError):
        world.images.generate(soup(request_id="s1"))
    assert world.budget.reservations["s1"].state is ReservationState.COMMITTED
    record = world.budget.records["s1"]
    assert (record.outcome, record.success) == (Outcome.GENERATED, False)
    assert record.cost_micros > 0
    assert record.error_message == "storing the image failed"


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (ReservationState.HELD, "REQUEST_IN_PROGRESS"),
        (ReservationState.RELEASED, "REQUEST_ALREADY_FAILED"),
        (ReservationState.EXPIRED, "REQUEST_ALREADY_FAILED"),
        (ReservationState.COMMITTED, "REQUEST_ALREADY_COMPLETED"),
    ],
)
def test_a_replayed_request_id_is_neither_generated_nor_recorded_again(
    world: World, state: ReservationState, reason: str
) -> None:
    world.budget.reservations["k1"] = Reservation("res-k1", state, 1, False)
    with pytest.raises(FailedPrecondition) as raised:
        world.images.generate(soup(request_id="k1"))
    assert raised.value.info.reason == reason
    assert raised.value.info.metadata["request_id"] == "k1"
    assert world.provider.calls == 0
    assert world.budget.records == {}


def test_a_committed_replay_serves_the_cached_image_free(world: World) -> None:
    # Attempt k2 finished elsewhere after this retry's cache lookup missed.
    world.budget.reservations["k2"] = Reservation("res-k2", ReservationState.COMMITTED, 1, False)
    generated = []
    world.budget.meanwhile = lambda: generated.append(world.images.generate(soup(request_id="k1")))

    replayed = world.images.generate(soup(request_id="k2"))
    assert (replayed.source, replayed.cost_micros, replayed.cost_saved_micros) == (
        Source.CACHE_EXACT,
        0,
        0,
    )
    assert replayed.image == generated[0].image
    assert list(world.budget.records) == ["k1"]
    assert world.entries()[0].exact_hits == 0


def test_two_misses_for_one_key_keep_one_entry_and_both_images(world: World) -> None:
    world.provider.distinct = True
    both_generating = threading.Barrier(2, timeout=10)
    generate = world.provider.generate

    def in_step(*args: str) -> GeneratedImage:
        both_generating.wait()
        return generate(*args)

    world.provider.generate = in_step  # type: ignore[method-assign]
    results = []
    threads = [
        threading.Thread(
            target=lambda key=key: results.append(world.images.generate(soup(request_id=key)))
        )
        for key in ("x1", "x2")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert [r.source for r in results] == [Source.GENERATED] * 2
    assert len({r.image.image_id for r in results}) == 2
    [entry] = world.entries()
    assert entry.image_id in {r.image.image_id for r in results}
    assert len(world.budget.commits) == 2  # both were paid for
    for result in results:  # and both images stay readable
        image, data = world.images.image(result.image.image_id)
        assert image == result.image and len(data) == image.size_bytes


def test_get_image_checks_the_id(world: World) -> None:
    with pytest.raises(InvalidArgument) as raised:
        world.images.image("not-a-sha")
    assert raised.value.violations[0].field == "image_id"
    with pytest.raises(NotFound):
        world.images.image("a" * 64)
