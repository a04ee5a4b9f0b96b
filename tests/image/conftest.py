"""Fixtures and helpers for the ImageService tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.common.v1 import image_quality_pb2
from recipeimage.image.v1 import image_service_pb2 as pb
from sqlalchemy import func, select

from services.budget.store.models import ReservationRow, UsageRow
from services.common.prices import PriceTable, load_price_table
from services.common.status import rich_details
from services.image.recipes.analyzer import Recipe
from services.image.settings import DEFAULT_MODEL
from services.image.store.models import PendingSettlement
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


def wait_for_other_replicas_records(pair: RunningPair, timeout: float = 30.0) -> None:
    """Wait (bounded) until no hit record in the shared outbox is still on its
    first attempt: another replica's sender has sent it (or failed, and its
    row says so)."""
    unsent = (
        select(func.count())
        .select_from(PendingSettlement)
        .where(
            PendingSettlement.kind == "record",
            PendingSettlement.last_error == "",
            PendingSettlement.abandoned_at.is_(None),
        )
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with pair.app.sessions.begin() as session:
            if not session.scalar(unsent):
                return
        time.sleep(0.02)


def ledger(pair: RunningPair) -> list[UsageRow]:
    """Every usage record BudgetService holds, oldest first (once the cache
    hits' records answered so far have left ImageService's outbox)."""
    assert pair.app.flush(timeout=30)
    wait_for_other_replicas_records(pair)
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


# ---- the labelled dishes (tests/fixtures/dish_pairs.json) --------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DISH_PAIRS = FIXTURES / "dish_pairs.json"


def labels(value: object) -> tuple[str, ...]:
    """A recipe's site labels: a comma-separated string, a list, or nothing."""
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(part.strip() for part in str(value or "").split(",") if part.strip())


def lines(value: object) -> tuple[str, ...]:
    """Ingredient or instruction lines: a list, or one string of lines."""
    if isinstance(value, str):
        return tuple(line.strip() for line in value.splitlines() if line.strip())
    return tuple(str(v) for v in value or ())


def plain_recipe(raw: dict, recipe_id: str = "") -> Recipe:  # type: ignore[type-arg]
    """A recipe of the shared data file (or the fixture) as the analyzer takes it."""
    return Recipe(
        title=str(raw.get("title") or ""),
        ingredients=lines(raw.get("ingredients"))[:100],
        instructions=lines(raw.get("instructions"))[:100],
        categories=labels(raw.get("category"))[:20],
        cuisine=",".join(labels(raw.get("cuisine")))[:100],
        recipe_id=recipe_id,
    )


def proto_recipe(recipe: Recipe) -> pb.Recipe:
    return pb.Recipe(
        recipe_id=recipe.recipe_id,
        title=recipe.title[:300],
        ingredients=[line[:500] for line in recipe.ingredients],
        instructions=[step[:2000] for step in recipe.instructions],
        categories=[label[:100] for label in recipe.categories],
        cuisine=recipe.cuisine,
    )


@dataclass(frozen=True)
class DishPairs:
    recipes: dict[str, Recipe]
    same: list[tuple[str, str, str]]
    different: list[tuple[str, str, str]]


# What test_similarity measured on the labelled pairs, for the terminal summary.
DISH_REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The same-dish recall of the labelled pairs, at the end of the run."""
    if DISH_REPORT:
        terminalreporter.write_sep("-", "similar-dish cache on tests/fixtures/dish_pairs.json")
        for line in DISH_REPORT:
            terminalreporter.write_line(line)


def dish_pairs() -> DishPairs:
    raw = json.loads(DISH_PAIRS.read_text(encoding="utf-8"))
    return DishPairs(
        recipes={
            key: plain_recipe(value, f"fixture-{key}") for key, value in raw["recipes"].items()
        },
        same=[(p["a"], p["b"], p["why"]) for p in raw["same"]],
        different=[(p["a"], p["b"], p["why"]) for p in raw["different"]],
    )
