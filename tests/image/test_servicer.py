"""ImageServicer driven by grpcio-testing (no network at the edge) over the
real use cases, a real database and a real BudgetService.

What is checked is the edge's own job: who may call, proto in, plain call,
proto out, domain errors as status codes.
"""

from __future__ import annotations

import hashlib

import grpc
import grpc_testing
import pytest
from recipeimage.image.v1 import image_service_pb2 as pb

from services.common.rpc import Guard
from services.common.telemetry import Metrics
from services.image.servicer import ImageServicer
from tests.image.conftest import HIGH, SOUP

SERVICE = pb.DESCRIPTOR.services_by_name["ImageService"]


@pytest.fixture
def server(pair, authenticator):  # type: ignore[no-untyped-def]
    servicer = ImageServicer(pair.app.use_cases, Guard(authenticator, Metrics("image")))
    return grpc_testing.server_from_dictionary({SERVICE: servicer}, grpc_testing.strict_real_time())


def call(server, method: str, request, metadata=()):  # type: ignore[no-untyped-def]
    rpc = server.invoke_unary_unary(SERVICE.methods_by_name[method], metadata, request, 30)
    response, _trailing, code, details = rpc.termination()
    return response, code, details


def generate(server, tokens, **fields):  # type: ignore[no-untyped-def]
    request = pb.GenerateImageRequest(user_id="u7", recipe=SOUP, **fields)
    response, code, details = call(server, "GenerateImage", request, tokens.service())
    assert code == grpc.StatusCode.OK, details
    return response


def test_generate_maps_the_request_in_and_the_result_out(server, tokens) -> None:
    first = generate(server, tokens, size="1024x1536", quality=HIGH, request_id="req-1")
    assert first.source == pb.IMAGE_SOURCE_GENERATED
    assert (first.size, first.quality, first.request_id) == ("1024x1536", HIGH, "req-1")
    assert first.cost_micros > 0 and first.cost_saved_micros == 0
    assert first.prompt and first.context.dish_identity
    again = generate(server, tokens, size="1024x1536", quality=HIGH, request_id="req-2")
    assert again.source == pb.IMAGE_SOURCE_CACHE_EXACT
    assert (again.cost_micros, again.cost_saved_micros, again.similarity) == (
        0,
        first.cost_micros,
        1.0,
    )
    assert again.image.image_id == first.image.image_id


def test_get_image_returns_metadata_and_bytes_to_any_role(server, tokens) -> None:
    made = generate(server, tokens).image
    for metadata in (tokens.user("u1"), tokens.service(), tokens.admin()):
        response, code, _ = call(
            server, "GetImage", pb.GetImageRequest(image_id=made.image_id), metadata
        )
        assert code == grpc.StatusCode.OK
        assert hashlib.sha256(response.data).hexdigest() == made.image_id
        assert response.image == made


def test_a_missing_image_is_not_found_and_a_bad_id_invalid(server, tokens) -> None:
    _, code, details = call(
        server, "GetImage", pb.GetImageRequest(image_id="cd" * 32), tokens.user("u1")
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert "cd" * 32 in details
    _, code, _ = call(server, "GetImage", pb.GetImageRequest(image_id="x"), tokens.user("u1"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer not-a-jwt"),), (("authorization", "Basic abc"),)],
    ids=["none", "forged", "wrong-scheme"],
)
def test_without_a_valid_token_nothing_is_served(server, tokens, metadata) -> None:
    for method, request in (
        ("GetImage", pb.GetImageRequest(image_id="ab" * 32)),
        ("GenerateImage", pb.GenerateImageRequest(user_id="u7", recipe=SOUP)),
        ("GetCacheStats", pb.GetCacheStatsRequest()),
        ("PurgeExpiredCache", pb.PurgeExpiredCacheRequest()),
        ("InvalidateCachedImage", pb.InvalidateCachedImageRequest(image_id="ab" * 32)),
    ):
        _, code, _ = call(server, method, request, metadata)
        assert code == grpc.StatusCode.UNAUTHENTICATED
    stats, _, _ = call(server, "GetCacheStats", pb.GetCacheStatsRequest(), tokens.admin())
    assert (stats.entries, stats.misses) == (0, 0)  # nothing was generated


def test_cache_stats_need_a_service_or_admin_token(server, tokens) -> None:
    generate(server, tokens)
    generate(server, tokens)
    _, code, _ = call(server, "GetCacheStats", pb.GetCacheStatsRequest(), tokens.user("u1"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    response, code, _ = call(
        server, "GetCacheStats", pb.GetCacheStatsRequest(page_size=5), tokens.service()
    )
    assert code == grpc.StatusCode.OK
    assert (response.entries, response.exact_hits, response.misses) == (1, 1, 1)
    assert response.hit_rate == 0.5
    [entry] = response.most_used_entries
    assert entry.uses == 1
    assert response.next_page_token == ""


def test_cache_admin_rpcs_need_an_admin_token(server, tokens) -> None:
    made = generate(server, tokens).image
    for method, request in (
        ("PurgeExpiredCache", pb.PurgeExpiredCacheRequest()),
        ("InvalidateCachedImage", pb.InvalidateCachedImageRequest(image_id=made.image_id)),
    ):
        for metadata in (tokens.user("u1"), tokens.service()):
            _, code, _ = call(server, method, request, metadata)
            assert code == grpc.StatusCode.PERMISSION_DENIED
    purged, code, _ = call(
        server, "PurgeExpiredCache", pb.PurgeExpiredCacheRequest(), tokens.admin()
    )
    assert (code, purged.purged_entries) == (grpc.StatusCode.OK, 0)  # nothing has expired
    invalidated, code, _ = call(
        server,
        "InvalidateCachedImage",
        pb.InvalidateCachedImageRequest(image_id=made.image_id),
        tokens.admin(),
    )
    assert (code, invalidated.invalidated_entries) == (grpc.StatusCode.OK, 1)
    # An invalidated image is no longer served from the cache.
    assert generate(server, tokens).source == pb.IMAGE_SOURCE_GENERATED
