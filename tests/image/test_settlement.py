"""The settlement outbox: a commit or release that cannot reach BudgetService is
kept in ImageService's database and settled later, exactly once in the ledger.

Real servers over loopback on SQLite and PostgreSQL; the generation is held in
the fake OpenAI server while BudgetService goes away. The ImageService that
settles afterwards is another replica on the same database pointed at a new
BudgetService on the same budget database (a restarted BudgetService gets a new
port; any replica may settle any row).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as pb
from sqlalchemy import select

from services.budget.store.models import ReservationRow, UsageRow
from services.common.db import create_db_engine, create_sessions
from services.image.adapters.budget_client import usage_record
from services.image.domain.accounting import Outcome, Usage
from services.image.domain.settlement import CLAIM_PERIOD, Settlement, backoff
from services.image.store.models import PendingSettlement, metadata
from services.image.store.settlements import (
    SettlementRepository,
    usage_from_json,
    usage_to_json,
)
from tests.image.conftest import CAKE, SOUP, T0, generate_request
from tests.support.budget_server import ManualClock, RunningBudget, running_budget
from tests.support.fake_openai import FakeOpenAI
from tests.support.image_outbox import pending_settlements
from tests.support.image_server import RunningImage, RunningPair, running_image, running_pair

# Far enough that every backoff and claim has run out.
LATER = timedelta(hours=1)


@dataclass
class Outage:
    pair: RunningPair
    clock: ManualClock
    database_url: str
    authenticator: object


@pytest.fixture
def outage(
    database_url: str, authenticator, clock: ManualClock, fake: FakeOpenAI
) -> Iterator[Outage]:
    with running_pair(
        database_url,
        authenticator,
        clock=clock,
        provider="openai",
        openai_base_url=fake.base_url,
        openai_max_retries=0,
        budget_deadline_seconds=1.0,
    ) as pair:
        yield Outage(pair, clock, database_url, authenticator)


def generate_while_budget_goes_away(
    outage: Outage, fake: FakeOpenAI, tokens, answer, recipe: pb.Recipe = SOUP, request_id="a1"
):  # type: ignore[no-untyped-def]
    """GenerateImage with the provider's answer held until BudgetService has
    stopped; the reply or the RpcError."""
    held = fake.held(answer)
    fake.script(held)
    seen = len(fake.requests)
    result: list[object] = []

    def call() -> None:
        try:
            result.append(
                outage.pair.image.GenerateImage(
                    generate_request(recipe, request_id=request_id),
                    metadata=tokens.user("u1"),
                    timeout=30,
                )
            )
        except grpc.RpcError as error:
            result.append(error)

    thread = threading.Thread(target=call)
    thread.start()
    assert fake.wait_for_requests(seen + 1)
    outage.pair.budget.app.stop(0)  # reserved, and now BudgetService is gone
    assert held.gate is not None
    held.gate.set()
    thread.join(30)
    [outcome] = result
    return outcome


@contextmanager
def budget_back(
    outage: Outage, **overrides: object
) -> Iterator[tuple[RunningBudget, RunningImage]]:
    """A new BudgetService on the same database, and an ImageService replica
    (same image database and store) that talks to it."""
    with (
        running_budget(outage.database_url, outage.authenticator, outage.clock) as budget,
        running_image(
            outage.database_url,
            outage.authenticator,  # type: ignore[arg-type]
            budget.target,
            outage.pair.store_dir,
            clock=outage.clock,
            **overrides,
        ) as replica,
    ):
        yield budget, replica


def pending(images_app) -> list[PendingSettlement]:  # type: ignore[no-untyped-def]
    with images_app.sessions.begin() as session:
        rows = pending_settlements(session)
        session.expunge_all()
        return rows


def ledger(budget: RunningBudget) -> list[UsageRow]:
    with budget.app.sessions.begin() as session:
        rows = list(session.scalars(select(UsageRow).order_by(UsageRow.id)))
        session.expunge_all()
        return rows


def reservations(budget: RunningBudget) -> list[ReservationRow]:
    with budget.app.sessions.begin() as session:
        rows = list(session.scalars(select(ReservationRow).order_by(ReservationRow.created_at)))
        session.expunge_all()
        return rows


# ---- a commit BudgetService did not take ------------------------------------------


@pytest.mark.parametrize("expired", [False, True], ids=["in-time", "after-expiry"])
def test_a_commit_that_cannot_reach_budget_service_is_settled_later(
    outage: Outage, fake: FakeOpenAI, tokens, expired: bool
) -> None:
    reply = generate_while_budget_goes_away(outage, fake, tokens, fake.success())

    # The caller gets the image it paid for.
    assert isinstance(reply, pb.GenerateImageResponse), reply
    assert reply.cost_micros > 0
    image = outage.pair.image.GetImage(
        pb.GetImageRequest(image_id=reply.image.image_id), metadata=tokens.user("u1")
    )
    assert image.data
    [row] = pending(outage.pair.app)
    assert (row.kind, row.actual_cost_micros, row.abandoned_at) == (
        "commit",
        reply.cost_micros,
        None,
    )
    assert row.attempts == 1 and row.last_error
    assert usage_from_json(row.usage).outcome is Outcome.GENERATED

    with budget_back(outage) as (budget, replica):
        [held] = reservations(budget)
        assert held.state == "held"
        if expired:
            # The reaper frees it as if nothing was spent; the late commit still lands.
            outage.clock.advance(timedelta(seconds=budget.app.settings.reservation_ttl_seconds + 1))
            assert budget.app.reap_expired() == 1
        # Not due yet: the backoff of the failed attempt has not run out.
        if not expired:
            assert replica.app.settle_pending(T0) == 0
        assert replica.app.settle_pending(outage.clock.now() + LATER) == 1

        [reservation] = reservations(budget)
        assert reservation.state == "committed"
        assert reservation.committed_micros == reply.cost_micros
        assert reservation.overrun is expired
        [record] = ledger(budget)
        assert (record.request_id, record.outcome, record.success) == ("a1", "generated", True)
        assert record.cost_micros == reply.cost_micros
        assert pending(replica.app) == []

        # Settling again changes nothing.
        assert replica.app.settle_pending(outage.clock.now() + 2 * LATER) == 0
        assert len(ledger(budget)) == 1
        assert reservations(budget)[0].committed_micros == reply.cost_micros


def test_the_background_settler_settles_and_stops_with_the_app(
    outage: Outage, fake: FakeOpenAI, tokens
) -> None:
    reply = generate_while_budget_goes_away(outage, fake, tokens, fake.success())
    assert isinstance(reply, pb.GenerateImageResponse)
    outage.clock.advance(LATER)  # past the failed attempt's backoff

    with budget_back(outage, settlement_interval_seconds=0.05) as (budget, replica):
        assert replica.app.settler.running
        deadline = time.monotonic() + 10
        while pending(replica.app) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pending(replica.app) == []
        [reservation] = reservations(budget)
        assert (reservation.state, reservation.committed_micros) == (
            "committed",
            reply.cost_micros,
        )
        assert len(ledger(budget)) == 1
    assert not replica.app.settler.running


# ---- a release BudgetService did not take -----------------------------------------


def test_a_release_that_cannot_reach_budget_service_is_settled_later(
    outage: Outage, fake: FakeOpenAI, tokens
) -> None:
    error = generate_while_budget_goes_away(outage, fake, tokens, fake.server_error(500))

    # The provider's error is what the caller sees, as before.
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "BudgetService" not in (error.details() or "")
    [row] = pending(outage.pair.app)
    assert (row.kind, row.actual_cost_micros) == ("release", 0)

    with budget_back(outage) as (budget, replica):
        assert replica.app.settle_pending(outage.clock.now() + LATER) == 1
        [reservation] = reservations(budget)
        assert (reservation.state, reservation.committed_micros) == ("released", 0)
        [record] = ledger(budget)
        assert (record.request_id, record.outcome, record.cost_micros) == ("a1", "failed", 0)
        assert record.success is False
        assert pending(replica.app) == []

        assert replica.app.settle_pending(outage.clock.now() + 2 * LATER) == 0
        assert len(ledger(budget)) == 1


# ---- a settlement BudgetService refuses for good -----------------------------------


def test_a_final_refusal_abandons_the_row_and_says_so(
    outage: Outage, fake: FakeOpenAI, tokens, caplog
) -> None:
    reply = generate_while_budget_goes_away(outage, fake, tokens, fake.success())
    assert isinstance(reply, pb.GenerateImageResponse)
    [row] = pending(outage.pair.app)

    with budget_back(outage) as (budget, replica):
        # Someone released the reservation meanwhile: the commit is refused for good.
        failed = replace(usage_from_json(row.usage), outcome=Outcome.FAILED, cost_micros=0)
        budget.stub.ReleaseReservation(
            budget_pb.ReleaseReservationRequest(
                reservation_id=row.reservation_id, usage=usage_record(failed, row.reservation_id)
            ),
            metadata=tokens.service(),
        )
        with caplog.at_level("ERROR", logger="recipeimage.image.settlement"):
            assert replica.app.settle_pending(outage.clock.now() + LATER) == 0

        [dead] = pending(replica.app)
        assert dead.abandoned_at is not None and dead.last_error
        [message] = [r for r in caplog.records if "refused a settlement" in r.getMessage()]
        assert message.levelname == "ERROR"
        assert message.reservation_id == row.reservation_id  # type: ignore[attr-defined]
        assert message.cost_micros == reply.cost_micros  # type: ignore[attr-defined]
        # Never retried.
        assert replica.app.settle_pending(outage.clock.now() + 3 * LATER) == 0
        [reservation] = reservations(budget)
        assert reservation.state == "released"
        assert len(ledger(budget)) == 1


def test_a_commit_refused_for_its_text_is_recorded_without_it(
    outage: Outage, fake: FakeOpenAI, tokens, caplog
) -> None:
    """Text BudgetService refuses (a NUL an older replica let through) must not
    cost the ledger a paid generation's spend: the commit goes in without it."""
    reply = generate_while_budget_goes_away(outage, fake, tokens, fake.success())
    assert isinstance(reply, pb.GenerateImageResponse)
    [row] = pending(outage.pair.app)
    usage = replace(usage_from_json(row.usage), recipe_id="x\x00", prompt="a photo\x00")
    with budget_back(outage) as (budget, replica):
        settler = replica.app.use_cases.settler
        with caplog.at_level("ERROR", logger="recipeimage.image.settlement"):
            attempt = settler.attempt(
                Settlement.commit(row.reservation_id, row.actual_cost_micros, usage)
            )
        assert attempt.error is None
        assert any("without its text" in r.getMessage() for r in caplog.records)
        [record] = ledger(budget)
        assert (record.outcome, record.cost_micros) == ("generated", reply.cost_micros)
        assert (record.recipe_id, record.prompt) == ("", "")
        [reservation] = reservations(budget)
        assert reservation.state == "committed"


# ---- two settlers ---------------------------------------------------------------


def test_two_settlers_never_settle_a_row_twice(outage: Outage, fake: FakeOpenAI, tokens) -> None:
    first = generate_while_budget_goes_away(outage, fake, tokens, fake.success(), SOUP, "s1")
    assert isinstance(first, pb.GenerateImageResponse)
    # BudgetService is down now: a second request fails closed before any spend.
    with pytest.raises(grpc.RpcError):
        outage.pair.image.GenerateImage(
            generate_request(CAKE, request_id="s2"), metadata=tokens.user("u1"), timeout=30
        )
    # Add more owed commits of the same reservation (as if several replicas had
    # each written one): the idempotent commit must charge it once.
    [row] = pending(outage.pair.app)
    with outage.pair.app.sessions.begin() as session:
        repo = SettlementRepository(session)
        for _ in range(5):
            repo.add(
                Settlement.commit(
                    row.reservation_id, row.actual_cost_micros, usage_from_json(row.usage)
                ),
                outage.clock.now(),
            )

    with ExitStack() as stack:
        budget, replica = stack.enter_context(budget_back(outage))
        other = stack.enter_context(
            running_image(
                outage.database_url,
                outage.authenticator,  # type: ignore[arg-type]
                budget.target,
                outage.pair.store_dir,
                clock=outage.clock,
            )
        )
        start = threading.Barrier(2)
        counts: list[int] = []

        def settle(app) -> None:  # type: ignore[no-untyped-def]
            start.wait()
            counts.append(app.settle_pending(outage.clock.now() + LATER))

        threads = [threading.Thread(target=settle, args=(a.app,)) for a in (replica, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        assert sum(counts) == 6  # every row acknowledged, each by one settler
        assert pending(replica.app) == []
        [reservation] = reservations(budget)
        assert reservation.state == "committed"
        assert reservation.committed_micros == first.cost_micros
        [record] = ledger(budget)
        assert (record.request_id, record.cost_micros) == ("s1", first.cost_micros)


def test_a_row_is_claimed_by_one_settler_only(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        sessions = create_sessions(engine)
        usage = Usage("r", "u1", "rec", "a prompt", "1024x1024", "medium", "m", "offline")
        with sessions.begin() as session:
            row_id = (
                SettlementRepository(session).add(Settlement.commit("res-1", 5, usage), T0).row_id
            )
        now = T0 + CLAIM_PERIOD
        with sessions.begin() as session:
            [(due_id, seen)] = SettlementRepository(session).due(now, 0, 10)
        assert (due_id, seen) == (row_id, 1)
        with sessions.begin() as session:
            assert SettlementRepository(session).claim(row_id, seen, now) is not None
        with sessions.begin() as session:
            # The second settler read the same version: it loses.
            assert SettlementRepository(session).claim(row_id, seen, now) is None
            # And the row is not due again until the claim period has run out.
            assert SettlementRepository(session).due(now, 0, 10) == []
            assert SettlementRepository(session).due(now + CLAIM_PERIOD, 0, 10) == [(row_id, 2)]
            SettlementRepository(session).acknowledged(row_id)
    finally:
        engine.dispose()


def test_usage_round_trips_and_backoff_grows() -> None:
    usage = Usage(
        "r", "u1", "rec", "p", "1024x1024", "high", "m", "openai", Outcome.FALLBACK, 7, True
    )
    assert usage_from_json(usage_to_json(usage)) == usage
    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [5, 10, 20]
    assert backoff(100) == timedelta(minutes=15)


def test_the_migration_creates_the_outbox_as_modelled(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diffs = [
                d for d in compare_metadata(context, metadata) if "pending_settlements" in str(d)
            ]
        assert diffs == []
    finally:
        engine.dispose()
