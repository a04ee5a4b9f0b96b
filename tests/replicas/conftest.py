"""The replica tests: real processes on one PostgreSQL database (PostgreSQL
only: SQLite is one machine's embedded default, never shared by replicas)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from recipeimage.image.v1 import image_service_pb2 as pb

from tests.support.databases import PostgresDatabases
from tests.support.fake_openai import FakeOpenAI, fake_openai

# A third recipe, beside tests/image's SOUP and CAKE.
PASTA = pb.Recipe(
    recipe_id="r-pasta",
    title="Spaghetti Carbonara",
    ingredients=["400 g spaghetti", "4 egg yolks", "150 g guanciale", "pecorino romano"],
    instructions=["Cook the pasta.", "Toss with the eggs, cheese and crisp guanciale."],
    categories=["Dinner", "Pasta"],
)

# Each module here: pytestmark = REPLICAS.
REPLICAS = [pytest.mark.replicas, pytest.mark.postgres]


@pytest.fixture
def postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """A freshly migrated PostgreSQL database holding both services' tables."""
    url = postgres_databases.create_copy()
    yield url
    postgres_databases.drop(url.rsplit("/", 1)[1])


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with fake_openai() as server:
        yield server
