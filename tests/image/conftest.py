"""Fixtures and helpers for the ImageService tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.common.v1 import image_quality_pb2
from recipeimage.image.v1 import image_service_pb2 as pb
from sqlalchemy import select

from services.budget.models import ReservationRow, UsageRow
from services.common.prices import PriceTable, load_price_table
from services.common.status import rich_details
from services.image.settings import DEFAULT_MODEL
from tests.support.budget_server import ManualClock
from tests.support.fake_openai import FakeOpenAI, fake_openai
from tests.support.image_server import RunningPair, running_pair

# A Tuesday in the middle of a month, well away from any window boundary.
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
MEDIUM = image_quality_pb2.IMAGE_QUALITY_MEDIUM
LOW = image_quality_pb2.IMAGE_QUALITY_LOW
HIGH = image_quality_pb2.IMAGE_QUALITY_HIGH

SOUP = pb.Recipe(
    recipe_id="r-soup",
    title="Broccoli Soup with Coconut Milk",
    ingredients=[
        "1 14- ounce can of full fat coconut milk",
        "3 cloves garlic, smashed",
        "2-3 large heads of broccoli (~1 1/2 lb.), cut into small florets",
    ],
    instructions=["Simmer the broccoli in the coconut milk.", "Puree with a blender."],
    categories=["Lunch", "Soup"],
)
CAKE = pb.Recipe(
    recipe_id="r-cake",
    title="The Best Vegan Chocolate Cake",
    ingredients=["2 cups flour", "1 cup cocoa powder", "1 cup almond milk"],
    instructions=["Bake at 350F for 30 minutes."],
    categories=["Dessert"],
)


@pytest.fixture(scope="session")
def prices() -> PriceTable:
    return load_price_table()


def per_image(prices: PriceTable, quality: str = "medium", size: str = "1024x1024") -> int:
    return prices.model(DEFAULT_MODEL).per_image_micros(quality, size)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def pair(database_url: str, authenticator, clock: ManualClock) -> Iterator[RunningPair]:
    with running_pair(database_url, authenticator, clock=clock) as running:
        yield running


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with fake_openai() as server:
        yield server


def generate_request(recipe: pb.Recipe = SOUP, **fields: object) -> pb.GenerateImageRequest:
    return pb.GenerateImageRequest(recipe=recipe, **fields)  # type: ignore[arg-type]


def refusal(call) -> tuple[grpc.RpcError, dict[str, object]]:  # type: ignore[no-untyped-def]
    """The error a call fails with, and its google.rpc details by type name."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value, {type(d).__name__: d for d in rich_details(raised.value)}


def ledger(pair: RunningPair) -> list[UsageRow]:
    """Every usage record BudgetService holds, oldest first."""
    with pair.budget.app.sessions.begin() as session:
        rows = session.scalars(select(UsageRow).order_by(UsageRow.id)).all()
        session.expunge_all()
        return list(rows)


def reservation_states(pair: RunningPair) -> list[str]:
    with pair.budget.app.sessions.begin() as session:
        return list(
            session.scalars(select(ReservationRow.state).order_by(ReservationRow.created_at))
        )


def user_daily(pair: RunningPair, tokens, user: str = "u1") -> budget_pb.Window:  # type: ignore[no-untyped-def]
    limits = pair.budget.stub.GetLimits(
        budget_pb.GetLimitsRequest(user_id=user), metadata=tokens.service()
    )
    return next(w for w in limits.windows if w.kind == budget_pb.WINDOW_KIND_USER_DAILY)
