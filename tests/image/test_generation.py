"""The GenerateImage use case, called as plain Python, against a real BudgetService
(over gRPC, through the real BudgetClient) on SQLite and PostgreSQL: what it
reserves, commits, releases and records, and what the cache holds.

What test_service.py already shows through ImageService's own gRPC edge (refusals,
BudgetService down, provider failures, GetImage) is not repeated here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.budget.store.models import ReservationRow
from services.common.db import create_db_engine, create_sessions
from services.common.errors import ContentRefused, FailedPrecondition, Unavailable
from services.common.paging import PageTokens
from services.common.prices import PriceTable, estimate_prompt_tokens
from services.image.adapters.budget_client import BudgetClient, ServiceToken
from services.image.adapters.image_store import ImageStore
from services.image.adapters.providers.offline import OfflineProvider
from services.image.adapters.providers.openai_provider import OpenAIProvider
from services.image.app.ports import Provider
from services.image.app.use_cases import ImageUseCases
from services.image.domain.command import Defaults, GenerateCommand
from services.image.domain.results import Source
from services.image.main import build_use_cases
from services.image.recipes.analyzer import Recipe
from services.image.recipes.similarity import DEFAULT_THRESHOLD
from services.image.settings import DEFAULT_MODEL, ImageSettings
from services.image.store.models import CacheEntry
from tests.conftest import TEST_SECRET
from tests.image.conftest import T0
from tests.support.budget_server import ManualClock, RunningBudget, running_budget
from tests.support.fake_openai import FakeOpenAI

TTL = timedelta(days=30)
SOUP = Recipe(title="Tomato Soup", ingredients=("6 ripe tomatoes",), recipe_id="r1")


@dataclass
class World:
    """The use cases wired to a real BudgetService; `fresh` wires them again
    on the same database and BudgetService with another provider or store."""

    images: ImageUseCases
    sessions: sessionmaker[Session]
    budget: RunningBudget
    clock: ManualClock
    make: Callable[[Provider | None, Path | None], ImageUseCases]

    def entries(self) -> list[CacheEntry]:
        self.images.flush()  # hit counts are written in batches
        with self.sessions.begin() as session:
            rows = list(session.scalars(select(CacheEntry).order_by(CacheEntry.id)))
            session.expunge_all()
            return rows

    def reservations(self) -> list[ReservationRow]:
        with self.budget.app.sessions.begin() as session:
            rows = list(session.scalars(select(ReservationRow)))
            session.expunge_all()
            return rows

    def fresh(self, provider: Provider | None = None, store: Path | None = None) -> ImageUseCases:
        return self.make(provider, store)


@pytest.fixture
def world(database_url: str, tmp_path: Path, prices: PriceTable, authenticator) -> Iterator[World]:
    clock = ManualClock(T0)
    engine = create_db_engine(database_url, pool_size=4)
    sessions = create_sessions(engine)
    with running_budget(database_url, authenticator, clock) as budget:
        channel = grpc.insecure_channel(budget.target)
        client = BudgetClient(
            channel, ServiceToken(authenticator), deadline_seconds=2.0, settle_attempts=1
        )

        settings = replace(
            ImageSettings.from_env({}),
            cache_ttl_days=TTL.days,
            similarity_threshold=DEFAULT_THRESHOLD,
            single_flight_wait_seconds=2.0,
        )

        def make(provider: Provider | None, store: Path | None) -> ImageUseCases:
            return build_use_cases(
                settings,
                sessions=sessions,
                files=ImageStore(store or tmp_path / "images"),
                budget=client,
                provider=provider or OfflineProvider(),
                prices=prices,
                defaults=Defaults(DEFAULT_MODEL, "1024x1024", "medium"),
                page_tokens=PageTokens.from_secret(TEST_SECRET),
                end_user_salt=b"test end users",
                clock=clock,
            )

        try:
            yield World(make(None, None), sessions, budget, clock, make)
        finally:
            channel.close()
            engine.dispose()


def soup(**fields: object) -> GenerateCommand:
    return GenerateCommand(user_id="u1", recipe=SOUP, **fields)  # type: ignore[arg-type]


def test_a_miss_reserves_the_most_it_can_cost_and_commits_the_per_image_figure(
    world: World, prices: PriceTable
) -> None:
    result = world.images.generate_image(soup(request_id="a1"))

    price = prices.model(DEFAULT_MODEL)
    [reservation] = world.reservations()
    assert reservation.idempotency_key == "a1"
    assert reservation.amount_micros == price.max_cost_micros(
        "medium", "1024x1024", estimate_prompt_tokens(result.prompt)
    )
    assert (reservation.state, reservation.committed_micros) == (
        "committed",
        price.per_image_micros("medium", "1024x1024"),
    )
    assert result.source is Source.GENERATED
    assert result.cost_micros == price.per_image_micros("medium", "1024x1024")
    assert result.context is not None and result.context.dish == "tomato soup"

    [entry] = world.entries()
    assert (entry.model, entry.size, entry.quality, entry.quality_rank, entry.prompt) == (
        DEFAULT_MODEL,
        "1024x1024",
        "medium",
        2,
        result.prompt,
    )
    assert entry.context["dish"] == "tomato soup" and entry.context["course"] == "soup"
    assert entry.context["dish_identity"] == "soup tomato"
    assert entry.match_key is not None  # a built prompt of a known dish: reusable
    assert entry.image_id == result.image.image_id
    assert (entry.cost_micros, entry.exact_hits, entry.uses, entry.cost_saved_micros) == (
        result.cost_micros,
        0,
        0,
        0,
    )
    assert (entry.created_at, entry.expires_at) == (T0, T0 + TTL)


def test_a_callers_prompt_is_cached_for_itself_only(world: World) -> None:
    world.images.generate_image(soup(prompt="A bowl of tomato soup on a red table"))
    [entry] = world.entries()
    assert entry.match_key is None


def test_hits_count_uses_and_savings_but_a_retried_request_id_does_not(world: World) -> None:
    generated = world.images.generate_image(soup())
    first = world.images.generate_image(soup(request_id="h1"))
    world.images.generate_image(soup(request_id="h2"))
    retried = world.images.generate_image(soup(request_id="h1"))

    assert first.source is retried.source is Source.CACHE_EXACT
    assert (first.cost_micros, first.cost_saved_micros) == (0, generated.cost_micros)
    [entry] = world.entries()
    assert (entry.exact_hits, entry.uses, entry.cost_saved_micros) == (
        2,
        2,
        2 * generated.cost_micros,
    )
    assert entry.last_hit_at == T0
    page = world.images.queries.cache_stats()
    stats = page.stats
    assert (stats.entries, stats.exact_hits, stats.misses) == (1, 2, 1)
    assert stats.total_cost_saved_micros == 2 * generated.cost_micros
    assert stats.hit_rate == pytest.approx(2 / 3)
    assert stats.exact_hit_rate == pytest.approx(2 / 3)
    assert stats.similar_hit_rate == 0.0
    assert [e.entry_id for e in page.most_used] == [entry.id]
    assert len(world.reservations()) == 1  # hits reserve nothing


def test_an_expired_entry_is_not_served_and_is_replaced_keeping_its_history(
    world: World,
) -> None:
    first = world.images.generate_image(soup())
    world.images.generate_image(soup())  # a hit
    world.clock.advance(TTL)

    again = world.images.generate_image(soup())
    assert again.source is Source.GENERATED
    [entry] = world.entries()
    assert (entry.exact_hits, entry.cost_saved_micros) == (0, 0)
    assert entry.expires_at == T0 + 2 * TTL
    stats = world.images.queries.cache_stats().stats
    assert stats.entries == 1
    # The replaced entry's hit and saving stay in the lifetime figures.
    assert (stats.misses, stats.exact_hits) == (2, 1)
    assert stats.total_cost_saved_micros == first.cost_micros


def test_live_entries_are_counted_in_sql_and_expired_ones_are_not(world: World) -> None:
    world.images.generate_image(soup())
    world.clock.advance(timedelta(days=10))
    world.images.generate_image(soup(size="1536x1024"))
    world.clock.advance(timedelta(days=25))  # the first has expired, the second lives
    stats = world.images.queries.cache_stats().stats
    assert (stats.entries, stats.misses, stats.exact_hits) == (1, 2, 0)
    assert stats.hit_rate == 0.0


def test_a_failed_release_does_not_hide_the_providers_error(world: World, fake: FakeOpenAI) -> None:
    refusal = fake.held(fake.content_policy())
    fake.script(refusal)
    images = world.fresh(OpenAIProvider(api_key="sk-test", base_url=fake.base_url, max_retries=0))
    raised: list[BaseException] = []

    def attempt() -> None:
        try:
            images.generate_image(soup(request_id="f2"))
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=attempt)
    thread.start()
    assert fake.wait_for_requests(1)
    world.budget.app.stop(0)  # BudgetService goes away while the provider works
    assert refusal.gate is not None
    refusal.gate.set()
    thread.join(10)

    [error] = raised
    assert isinstance(error, ContentRefused)
    assert world.entries() == []


def test_an_image_that_cannot_be_stored_is_still_paid_for(world: World, tmp_path: Path) -> None:
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("the image store cannot live under a file")
    images = world.fresh(store=not_a_directory)

    with pytest.raises(Unavailable) as raised:
        images.generate_image(soup(request_id="s1"))
    assert raised.value.info.reason == "IMAGE_STORE_UNAVAILABLE"
    assert isinstance(raised.value.__cause__, OSError)

    [reservation] = world.reservations()
    assert reservation.state == "committed" and reservation.committed_micros > 0
    with world.budget.app.sessions.begin() as session:
        from services.budget.store.models import UsageRow

        [record] = session.scalars(select(UsageRow)).all()
        assert (record.request_id, record.outcome, record.success) == ("s1", "generated", False)
        assert record.error_message == "storing the image failed"
    assert world.entries() == []


def _reserve(world: World, tokens, key: str) -> str:  # type: ignore[no-untyped-def]
    reply = world.budget.stub.ReserveBudget(
        budget_pb.ReserveBudgetRequest(user_id="u1", amount_micros=1000, idempotency_key=key),
        metadata=tokens.service(),
    )
    return reply.reservation.reservation_id


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("held", "REQUEST_IN_PROGRESS"),
        ("released", "REQUEST_ALREADY_FAILED"),
        ("expired", "REQUEST_ALREADY_FAILED"),
        ("committed", "REQUEST_ALREADY_COMPLETED"),
    ],
)
def test_a_replayed_request_id_is_neither_generated_nor_recorded_again(
    world: World, tokens, state: str, reason: str
) -> None:
    reservation_id = _reserve(world, tokens, "k1")
    usage = budget_pb.UsageRecord(outcome=budget_pb.USAGE_OUTCOME_FAILED)
    if state == "released":
        world.budget.stub.ReleaseReservation(
            budget_pb.ReleaseReservationRequest(reservation_id=reservation_id, usage=usage),
            metadata=tokens.service(),
        )
    elif state == "expired":
        world.clock.advance(timedelta(hours=1))
        assert world.budget.app.reap_expired() == 1
    elif state == "committed":
        world.budget.stub.CommitReservation(
            budget_pb.CommitReservationRequest(
                reservation_id=reservation_id,
                actual_cost_micros=500,
                usage=budget_pb.UsageRecord(outcome=budget_pb.USAGE_OUTCOME_GENERATED),
            ),
            metadata=tokens.service(),
        )

    with pytest.raises(FailedPrecondition) as raised:
        world.images.generate_image(soup(request_id="k1"))
    assert raised.value.info.reason == reason
    assert raised.value.info.metadata["request_id"] == "k1"
    assert world.entries() == []  # nothing generated
    assert [r.state for r in world.reservations()] == [state]  # nothing new held
