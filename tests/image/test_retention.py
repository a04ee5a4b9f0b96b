"""Image retention on SQLite and PostgreSQL, with the local and the S3 store:
bytes nothing refers to are deleted after the grace period, never before, and
never while something stores or serves them again, however the job and a new
generation of the same bytes interleave.

The use cases are wired as main.py wires them, to a real BudgetService and a
real store. The store is wrapped in a gate that can hold a put or a delete at
the moment it happens, so each interleaving is made to happen, not hoped for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from recipeimage.image.v1 import image_service_pb2 as pb
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from services.common.db import create_db_engine, create_sessions
from services.common.errors import NotFound
from services.common.paging import PageTokens
from services.common.prices import PriceTable
from services.image.adapters.budget_client import BudgetClient, ServiceToken
from services.image.adapters.image_store import ImageStore
from services.image.adapters.providers.offline import OfflineProvider
from services.image.adapters.s3_image_store import S3ImageStore
from services.image.app.ports import ImageStorage
from services.image.app.retention import ImageRetention
from services.image.app.use_cases import ImageUseCases
from services.image.domain.accounting import Usage
from services.image.domain.command import Defaults, GenerateCommand
from services.image.domain.settlement import Settlement
from services.image.main import build_use_cases
from services.image.recipes.analyzer import Recipe
from services.image.settings import DEFAULT_MODEL, ImageSettings
from services.image.store.retention import RetentionRepository
from services.image.store.settlements import SettlementRepository
from tests.conftest import TEST_SECRET
from tests.image.conftest import T0, generate_request
from tests.support.budget_server import ManualClock, running_budget
from tests.support.image_server import running_pair
from tests.support.s3_server import RunningS3, s3_server

GRACE = timedelta(days=7)
SOUP = Recipe(title="Tomato Soup", ingredients=("6 ripe tomatoes",), recipe_id="r1")
GATE_SECONDS = 20.0


class GatedStore:
    """A real store whose put or delete can be held at its start: the test
    decides when the other side of a race runs."""

    def __init__(self, inner: ImageStorage) -> None:
        self.inner = inner
        self.hold: str | None = None  # "put" or "delete"
        self.reached = threading.Event()
        self.release = threading.Event()

    def gate(self, action: str) -> None:
        self.hold = action
        self.reached.clear()
        self.release.clear()

    def _maybe_wait(self, action: str) -> None:
        if self.hold == action:
            self.hold = None
            self.reached.set()
            assert self.release.wait(GATE_SECONDS)

    def put(self, data: bytes, content_type: str) -> str:
        self._maybe_wait("put")
        return self.inner.put(data, content_type)

    def get(self, image_id: str, content_type: str) -> bytes:
        return self.inner.get(image_id, content_type)

    def delete(self, image_id: str, content_type: str) -> None:
        self._maybe_wait("delete")
        self.inner.delete(image_id, content_type)


@pytest.fixture(scope="module")
def s3() -> Iterator[RunningS3]:
    with s3_server() as running:
        yield running


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> GatedStore:
    if request.param == "local":
        return GatedStore(ImageStore(tmp_path / "images"))
    s3: RunningS3 = request.getfixturevalue("s3")
    return GatedStore(S3ImageStore(s3.bucket()))


@dataclass
class World:
    images: ImageUseCases
    sessions: sessionmaker[Session]
    clock: ManualClock
    store: GatedStore
    database_url: str
    make_retention: Callable[[], ImageRetention]

    def generate(self, request_id: str) -> str:
        result = self.images.generate_image(
            GenerateCommand(user_id="u1", recipe=SOUP, request_id=request_id)
        )
        assert result.image is not None
        return result.image.image_id

    def forget_entries(self, image_id: str) -> None:
        """Invalidate and purge the image's cache entries: its last reference goes."""
        self.images.cache_admin.invalidate_image(image_id)
        self.images.cache_admin.purge_expired()

    def unreferenced_since(self, image_id: str):  # type: ignore[no-untyped-def]
        with self.sessions.begin() as session:
            return RetentionRepository(session).unreferenced_since(image_id)

    def served(self, image_id: str) -> bytes:
        return self.images.queries.get_image(image_id)[1]

    def make_candidate(self, request_id: str = "first") -> str:
        """An image generated, left by its last reference, marked, and past the grace."""
        image_id = self.generate(request_id)
        self.forget_entries(image_id)
        assert self.images.retention.run() == 0
        assert self.unreferenced_since(image_id) == self.clock.now()
        self.clock.advance(GRACE + timedelta(seconds=1))
        return image_id


@pytest.fixture
def world(
    database_url: str, store: GatedStore, prices: PriceTable, authenticator
) -> Iterator[World]:
    clock = ManualClock(T0)
    engine = create_db_engine(database_url, pool_size=6)
    sessions = create_sessions(engine)
    settings = replace(ImageSettings.from_env({}), retention_grace_seconds=GRACE.total_seconds())
    with running_budget(database_url, authenticator, clock) as budget:
        channel = grpc.insecure_channel(budget.target)
        client = BudgetClient(
            channel, ServiceToken(authenticator), deadline_seconds=5.0, settle_attempts=1
        )
        images = build_use_cases(
            settings,
            sessions=sessions,
            files=store,
            budget=client,
            provider=OfflineProvider(),
            prices=prices,
            defaults=Defaults(DEFAULT_MODEL, "1024x1024", "medium"),
            page_tokens=PageTokens.from_secret(TEST_SECRET),
            end_user_salt=b"test end users",
            clock=clock,
        )

        def make_retention() -> ImageRetention:
            return ImageRetention(sessions, store, clock, grace=GRACE)

        try:
            yield World(images, sessions, clock, store, database_url, make_retention)
        finally:
            channel.close()
            engine.dispose()


def test_unreferenced_bytes_go_after_the_grace_period_and_not_before(world: World) -> None:
    image_id = world.generate("first")
    assert world.images.retention.run() == 0
    assert world.unreferenced_since(image_id) is None  # its cache entry holds it

    world.forget_entries(image_id)
    assert world.images.retention.run() == 0
    marked_at = world.unreferenced_since(image_id)
    assert marked_at == world.clock.now()

    world.clock.advance(GRACE - timedelta(seconds=1))
    assert world.images.retention.run() == 0
    assert world.unreferenced_since(image_id) == marked_at  # a later run keeps the first mark
    assert world.served(image_id)  # still readable during the grace period

    world.clock.advance(timedelta(seconds=2))
    assert world.images.retention.run() == 1
    with pytest.raises(FileNotFoundError):
        world.store.get(image_id, "image/png")
    with pytest.raises(NotFound):
        world.served(image_id)
    assert world.images.retention.run() == 0


def test_an_outbox_row_naming_the_image_keeps_it(world: World) -> None:
    image_id = world.make_candidate()
    usage = Usage(
        request_id="owed",
        user_id="u1",
        recipe_id="r1",
        prompt="soup",
        size="1024x1024",
        quality="medium",
        model=DEFAULT_MODEL,
        provider="offline",
        image_id=image_id,
    )
    with world.sessions.begin() as session:
        row_id = (
            SettlementRepository(session)
            .add(Settlement.commit("r-owed", 100, usage), world.clock.now())
            .row_id
        )

    assert world.images.retention.run() == 0
    assert world.unreferenced_since(image_id) is None
    assert world.served(image_id)

    with world.sessions.begin() as session:
        assert row_id is not None
        SettlementRepository(session).acknowledged(row_id)
    assert world.images.retention.run() == 0  # marked again, a new grace period
    world.clock.advance(GRACE + timedelta(seconds=1))
    assert world.images.retention.run() == 1


def test_the_fallback_image_is_never_deleted(world: World) -> None:
    fallback = world.images.generate_image.keeper.store_image(
        b"\x89PNG\r\n\x1a\nfallback", "image/png", pinned=True
    )
    for _ in range(2):
        assert world.images.retention.run() == 0
        world.clock.advance(GRACE * 10)
    assert world.unreferenced_since(fallback.image_id) is None
    assert world.served(fallback.image_id) == b"\x89PNG\r\n\x1a\nfallback"


def test_a_candidate_stored_again_keeps_its_bytes(world: World) -> None:
    """The same recipe generated again gives the same bytes (content addressed):
    the new cache entry refers to the candidate, which is no longer one."""
    image_id = world.make_candidate()
    assert world.generate("again") == image_id
    assert world.unreferenced_since(image_id) is None

    assert world.images.retention.run() == 0
    world.clock.advance(GRACE * 2)
    assert world.images.retention.run() == 0
    assert world.served(image_id)
    # A hit on the new entry serves the same bytes.
    hit = world.images.generate_image(GenerateCommand(user_id="u2", recipe=SOUP))
    assert hit.image is not None and hit.image.image_id == image_id


def test_the_job_racing_a_writer_that_holds_the_image_deletes_nothing(world: World) -> None:
    """A new generation has claimed the image row and is storing the bytes when
    the job runs: PostgreSQL's job skips the row it cannot lock; SQLite's waits
    for the writer and then finds the image referenced."""
    image_id = world.make_candidate()
    world.store.gate("put")
    generated: list[str] = []
    writer = threading.Thread(target=lambda: generated.append(world.generate("again")))
    writer.start()
    assert world.store.reached.wait(GATE_SECONDS)  # row claimed, bytes not yet checked

    swept: list[int] = []
    job = threading.Thread(target=lambda: swept.append(world.make_retention().run()))
    job.start()
    job.join(2.0)  # PostgreSQL: done already; SQLite: waiting for the writer's lock
    world.store.release.set()
    writer.join(GATE_SECONDS)
    job.join(GATE_SECONDS)

    assert generated == [image_id] and swept == [0]
    assert world.unreferenced_since(image_id) is None
    assert world.served(image_id)


def test_a_writer_racing_the_job_mid_delete_stores_the_bytes_again(world: World) -> None:
    """The job has deleted the image row and is deleting the bytes when a new
    generation of the same bytes arrives: the writer waits for the job, then
    writes a fresh row and the bytes again; the new entry serves them."""
    image_id = world.make_candidate()
    world.store.gate("delete")
    swept: list[int] = []
    job = threading.Thread(target=lambda: swept.append(world.images.retention.run()))
    job.start()
    assert world.store.reached.wait(GATE_SECONDS)  # row deleted, transaction open

    generated: list[str] = []
    writer = threading.Thread(target=lambda: generated.append(world.generate("again")))
    writer.start()
    wait_until_blocked(world)
    world.store.release.set()
    job.join(GATE_SECONDS)
    writer.join(GATE_SECONDS)

    assert swept == [1] and generated == [image_id]
    assert world.unreferenced_since(image_id) is None
    assert world.served(image_id)
    assert world.images.retention.run() == 0


def test_two_jobs_at_once_delete_each_image_once(world: World) -> None:
    recipes = [
        Recipe(title=f"{name} Soup", ingredients=("water",), recipe_id=name)
        for name in ("Leek", "Onion", "Pea", "Bean", "Corn", "Kale")
    ]
    ids = []
    for index, recipe in enumerate(recipes):
        result = world.images.generate_image(
            GenerateCommand(user_id="u1", recipe=recipe, request_id=f"r{index}")
        )
        assert result.image is not None
        ids.append(result.image.image_id)
        world.forget_entries(result.image.image_id)
    assert world.images.retention.run() == 0
    world.clock.advance(GRACE + timedelta(seconds=1))

    jobs = [replace_batch(world.make_retention(), 1) for _ in range(2)]
    counts: list[int] = []
    threads = [threading.Thread(target=lambda j=job: counts.append(j.run())) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(GATE_SECONDS)

    assert sum(counts) == len(set(ids))
    for image_id in ids:
        with pytest.raises(FileNotFoundError):
            world.store.get(image_id, "image/png")


def replace_batch(job: ImageRetention, batch: int) -> ImageRetention:
    job.batch = batch
    return job


def wait_until_blocked(world: World) -> None:
    """PostgreSQL: until a backend waits on a lock (the writer, behind the job);
    SQLite has no such view: the writer waits on BEGIN IMMEDIATE, give it a moment."""
    if not world.database_url.startswith("postgresql"):
        time.sleep(0.5)
        return
    deadline = time.monotonic() + GATE_SECONDS
    while time.monotonic() < deadline:
        with world.sessions.begin() as session:
            waiting = session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the writer never waited for the job")


def test_the_service_runs_the_job_in_the_background(
    database_url: str, authenticator, tokens
) -> None:
    """build_app starts the job: with no grace, bytes whose entry was purged
    are gone by the next tick, and GetImage says NOT_FOUND."""
    with running_pair(
        database_url,
        authenticator,
        retention_interval_seconds=0.05,
        retention_grace_seconds=0.0,
    ) as pair:
        assert pair.app.retention.running
        image_id = pair.image.GenerateImage(
            generate_request(request_id="g1"), metadata=tokens.user("u1")
        ).image.image_id
        files = list(pair.store_dir.rglob(f"{image_id}.png"))
        assert len(files) == 1
        pair.image.InvalidateCachedImage(
            pb.InvalidateCachedImageRequest(image_id=image_id), metadata=tokens.admin()
        )
        pair.image.PurgeExpiredCache(pb.PurgeExpiredCacheRequest(), metadata=tokens.admin())
        deadline = time.monotonic() + GATE_SECONDS
        while files[0].exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not files[0].exists()
        with pytest.raises(grpc.RpcError) as raised:
            pair.image.GetImage(pb.GetImageRequest(image_id=image_id), metadata=tokens.user("u1"))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert not pair.app.retention.running
