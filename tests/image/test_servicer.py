"""ImageServicer driven by grpcio-testing: no network, the use cases stubbed.

What is checked is the edge's own job: who may call, proto in, plain call,
proto out, domain errors as status codes.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import grpc_testing
import pytest
from google.protobuf import timestamp_pb2
from recipeimage.image.v1 import image_service_pb2 as pb

from services.common.errors import NotFound
from services.common.rpc import Guard
from services.common.telemetry import Metrics
from services.image.analyzer import RecipeContext
from services.image.cache import CacheStats
from services.image.generation import (
    CachedEntry,
    CacheStatsPage,
    GenerateResult,
    Source,
    StoredImage,
)
from services.image.servicer import ImageServicer
from services.image.validation import GenerateCommand
from tests.image.conftest import HIGH

SERVICE = pb.DESCRIPTOR.services_by_name["ImageService"]
CREATED = datetime(2026, 3, 10, 12, 0, 1, 500_000, tzinfo=UTC)
IMAGE = StoredImage("ab" * 32, "image/png", 3, CREATED)


class StubImages:
    def __init__(self) -> None:
        self.commands: list[GenerateCommand] = []
        self.pages: list[tuple[int, str]] = []
        self.invalidated: list[str] = []

    def generate(self, command: GenerateCommand) -> GenerateResult:
        self.commands.append(command)
        return GenerateResult(
            image=IMAGE,
            source=Source.CACHE_EXACT,
            cost_micros=0,
            cost_saved_micros=13_170,
            similarity=1.0,
            prompt="a photo",
            request_id="req-1",
            model="gpt-image-2",
            size="1024x1536",
            quality="high",
            context=RecipeContext(
                dish="soup", dish_identity="soup", course="soup", dietary_tags=("vegan",)
            ),
        )

    def image(self, image_id: str) -> tuple[StoredImage, bytes]:
        if image_id != IMAGE.image_id:
            raise NotFound(f"no image {image_id}")
        return IMAGE, b"png"

    def cache_stats(self, page_size: int = 0, page_token: str = "") -> CacheStatsPage:
        self.pages.append((page_size, page_token))
        entry = CachedEntry(
            entry_id=7,
            image=IMAGE,
            model="gpt-image-2",
            size="1024x1024",
            quality="medium",
            dish="soup",
            uses=4,
            exact_hits=3,
            similar_hits=1,
            cost_micros=10,
            cost_saved_micros=40,
            created_at=CREATED,
            expires_at=CREATED,
            last_hit_at=None,
        )
        return CacheStatsPage(
            CacheStats(
                entries=2, exact_hits=2, similar_hits=1, misses=1, total_cost_saved_micros=9
            ),
            [entry],
            "next",
        )

    def purge_expired(self) -> int:
        return 5

    def invalidate_image(self, image_id: str) -> int:
        self.invalidated.append(image_id)
        return 1


@pytest.fixture
def images() -> StubImages:
    return StubImages()


@pytest.fixture
def server(images: StubImages, authenticator):  # type: ignore[no-untyped-def]
    servicer = ImageServicer(images, Guard(authenticator, Metrics("image")))  # type: ignore[arg-type]
    return grpc_testing.server_from_dictionary({SERVICE: servicer}, grpc_testing.strict_real_time())


def call(server, method: str, request, metadata=()):  # type: ignore[no-untyped-def]
    rpc = server.invoke_unary_unary(SERVICE.methods_by_name[method], metadata, request, 5)
    response, _trailing, code, details = rpc.termination()
    return response, code, details


def test_get_image_returns_metadata_and_bytes_to_any_role(server, tokens) -> None:
    for metadata in (tokens.user("u1"), tokens.service(), tokens.admin()):
        response, code, _ = call(
            server, "GetImage", pb.GetImageRequest(image_id=IMAGE.image_id), metadata
        )
        assert code == grpc.StatusCode.OK
        assert response.data == b"png"
        assert response.image.image_id == IMAGE.image_id
        assert (response.image.content_type, response.image.size_bytes) == ("image/png", 3)
        expected = timestamp_pb2.Timestamp()
        expected.FromDatetime(CREATED)
        assert response.image.create_time == expected


def test_a_missing_image_is_not_found(server, tokens) -> None:
    _, code, details = call(
        server, "GetImage", pb.GetImageRequest(image_id="cd" * 32), tokens.user("u1")
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert details == f"no image {'cd' * 32}"


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer not-a-jwt"),), (("authorization", "Basic abc"),)],
    ids=["none", "forged", "wrong-scheme"],
)
def test_without_a_valid_token_nothing_is_served(server, images, metadata) -> None:
    for method, request in (
        ("GetImage", pb.GetImageRequest(image_id=IMAGE.image_id)),
        ("GenerateImage", pb.GenerateImageRequest(recipe=pb.Recipe(title="soup"))),
        ("GetCacheStats", pb.GetCacheStatsRequest()),
        ("PurgeExpiredCache", pb.PurgeExpiredCacheRequest()),
        ("InvalidateCachedImage", pb.InvalidateCachedImageRequest(image_id="ab" * 32)),
    ):
        _, code, _ = call(server, method, request, metadata)
        assert code == grpc.StatusCode.UNAUTHENTICATED
    assert images.commands == []


def test_cache_stats_need_a_service_or_admin_token(server, images, tokens) -> None:
    _, code, _ = call(server, "GetCacheStats", pb.GetCacheStatsRequest(), tokens.user("u1"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    response, code, _ = call(
        server,
        "GetCacheStats",
        pb.GetCacheStatsRequest(page_size=5, page_token="abc"),
        tokens.admin(),
    )
    assert code == grpc.StatusCode.OK
    assert images.pages == [(5, "abc")]
    assert (response.entries, response.exact_hits, response.similar_hits, response.misses) == (
        2,
        2,
        1,
        1,
    )
    assert response.hit_rate == 0.75
    assert (response.exact_hit_rate, response.similar_hit_rate) == (0.5, 0.25)
    assert response.total_cost_saved_micros == 9
    assert response.next_page_token == "next"
    [entry] = response.most_used_entries
    assert (entry.entry_id, entry.dish, entry.uses, entry.similar_hits) == ("7", "soup", 4, 1)
    assert entry.image.image_id == IMAGE.image_id
    assert not entry.HasField("last_hit_time")


@pytest.mark.parametrize(
    ("method", "request_message"),
    [
        ("PurgeExpiredCache", pb.PurgeExpiredCacheRequest()),
        ("InvalidateCachedImage", pb.InvalidateCachedImageRequest(image_id="ab" * 32)),
    ],
)
def test_cache_admin_rpcs_need_an_admin_token(server, images, tokens, method, request_message):  # type: ignore[no-untyped-def]
    for metadata in (tokens.user("u1"), tokens.service()):
        _, code, _ = call(server, method, request_message, metadata)
        assert code == grpc.StatusCode.PERMISSION_DENIED
    response, code, _ = call(server, method, request_message, tokens.admin())
    assert code == grpc.StatusCode.OK
    if method == "PurgeExpiredCache":
        assert response.purged_entries == 5
    else:
        assert response.invalidated_entries == 1
        assert images.invalidated == ["ab" * 32]


def test_generate_passes_plain_values_and_maps_the_result(server, images, tokens) -> None:
    request = pb.GenerateImageRequest(
        user_id="u7",
        recipe=pb.Recipe(
            recipe_id="r1",
            title="Soup",
            ingredients=["1 onion"],
            instructions=["Simmer."],
            categories=["Soup"],
            cuisine="French",
        ),
        model="gpt-image-2",
        size="1024x1536",
        quality=HIGH,
        prompt="a photo",
        request_id="req-1",
        allow_similar=True,
        min_similarity=0.75,
    )
    response, code, _ = call(server, "GenerateImage", request, tokens.service())
    assert code == grpc.StatusCode.OK
    [command] = images.commands
    assert command.user_id == "u7"
    assert command.recipe.title == "Soup"
    assert command.recipe.ingredients == ("1 onion",)
    assert (command.recipe.recipe_id, command.recipe.cuisine) == ("r1", "French")
    assert (command.model, command.size, command.quality) == ("gpt-image-2", "1024x1536", "high")
    assert (command.prompt, command.request_id) == ("a photo", "req-1")
    assert (command.allow_similar, command.min_similarity) == (True, 0.75)

    assert response.source == pb.IMAGE_SOURCE_CACHE_EXACT
    assert (response.cost_micros, response.cost_saved_micros, response.similarity) == (
        0,
        13_170,
        1.0,
    )
    assert (response.quality, response.size, response.request_id) == (HIGH, "1024x1536", "req-1")
    assert response.image.image_id == IMAGE.image_id
    assert (response.context.dish, response.context.course) == ("soup", "soup")
    assert list(response.context.dietary_tags) == ["vegan"]
    assert response.context.cuisine == "unknown"
    assert response.fallback_used is False


def test_a_user_acts_only_for_itself(server, images, tokens) -> None:
    request = pb.GenerateImageRequest(recipe=pb.Recipe(title="Soup"))
    call(server, "GenerateImage", request, tokens.user("u1"))
    assert images.commands[-1].user_id == "u1"
    assert images.commands[-1].quality == ""  # unspecified: the default applies later

    request.user_id = "u2"
    _, code, _ = call(server, "GenerateImage", request, tokens.user("u1"))
    assert code == grpc.StatusCode.PERMISSION_DENIED

    request.user_id = ""
    _, code, details = call(server, "GenerateImage", request, tokens.service())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("user_id: required")
    assert len(images.commands) == 1
