"""GetImage answers in one message what fits the server's maximum message size;
StreamImage streams any image in chunks, the first carrying the metadata. A
server with a small maximum message size shows both on an image larger than it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from recipeimage.image.v1 import image_service_pb2 as pb

from services.common.transport import WireLimits
from services.image.app.queries import STREAM_CHUNK_BYTES
from tests.image.conftest import generate_request, refusal
from tests.support.image_server import RunningPair, running_pair

MAX_MESSAGE = 128 * 1024
# A PNG (by its magic number) several times the message limit, not a multiple of a chunk.
LARGE = b"\x89PNG\r\n\x1a\n" + os.urandom(5 * MAX_MESSAGE + 12345)


@pytest.fixture
def small_pair(
    database_url: str, authenticator, tmp_path: Path
) -> Iterator[tuple[RunningPair, str]]:
    """A pair whose ImageService sends at most MAX_MESSAGE bytes a message, with
    a fallback image (stored at start) larger than that."""
    fallback = tmp_path / "large.png"
    fallback.write_bytes(LARGE)
    with running_pair(
        database_url,
        authenticator,
        wire=WireLimits(max_send_message_bytes=MAX_MESSAGE, max_receive_message_bytes=MAX_MESSAGE),
        fallback_image=fallback,
    ) as pair:
        yield pair, hashlib.sha256(LARGE).hexdigest()


def stream(pair: RunningPair, image_id: str, metadata) -> list[pb.StreamImageResponse]:  # type: ignore[no-untyped-def]
    return list(pair.image.StreamImage(pb.StreamImageRequest(image_id=image_id), metadata=metadata))


def test_a_large_image_is_refused_by_get_image_naming_stream_image(small_pair, tokens) -> None:  # type: ignore[no-untyped-def]
    pair, image_id = small_pair
    error, details = refusal(
        lambda: pair.image.GetImage(
            pb.GetImageRequest(image_id=image_id), metadata=tokens.user("u1")
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "StreamImage" in error.details()
    info = details["ErrorInfo"]
    assert info.reason == "IMAGE_TOO_LARGE"
    assert dict(info.metadata) == {
        "size_bytes": str(len(LARGE)),
        "max_message_bytes": str(MAX_MESSAGE),
        "use": "StreamImage",
    }


def test_stream_image_sends_a_large_image_in_chunks_metadata_first(small_pair, tokens) -> None:  # type: ignore[no-untyped-def]
    pair, image_id = small_pair
    messages = stream(pair, image_id, tokens.user("u1"))

    assert b"".join(m.data for m in messages) == LARGE
    assert [m.offset for m in messages] == list(range(0, len(LARGE), STREAM_CHUNK_BYTES))
    assert all(len(m.data) <= STREAM_CHUNK_BYTES for m in messages)
    first, *rest = messages
    assert (first.image.image_id, first.image.size_bytes, first.image.content_type) == (
        image_id,
        len(LARGE),
        "image/png",
    )
    assert not any(m.HasField("image") for m in rest)


def test_a_small_image_comes_whole_from_both(small_pair, tokens) -> None:  # type: ignore[no-untyped-def]
    pair, _ = small_pair
    image_id = pair.image.GenerateImage(
        generate_request(request_id="s1"), metadata=tokens.user("u1")
    ).image.image_id

    whole = pair.image.GetImage(pb.GetImageRequest(image_id=image_id), metadata=tokens.user("u1"))
    [only] = stream(pair, image_id, tokens.service())

    assert hashlib.sha256(whole.data).hexdigest() == image_id
    assert (only.data, only.offset, only.image.image_id) == (whole.data, 0, image_id)


def test_stream_image_has_get_images_access_and_errors(small_pair, tokens) -> None:  # type: ignore[no-untyped-def]
    pair, image_id = small_pair
    for metadata, code in (
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer forged"),), grpc.StatusCode.UNAUTHENTICATED),
    ):
        error, _ = refusal(lambda m=metadata: stream(pair, image_id, m))
        assert error.code() == code
    error, details = refusal(lambda: stream(pair, "not-an-id", tokens.user("u1")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details["BadRequest"].field_violations[0].field == "image_id"
    error, _ = refusal(lambda: stream(pair, "0" * 64, tokens.admin()))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    for metadata in (tokens.user("u1"), tokens.service(), tokens.admin()):
        assert len(stream(pair, image_id, metadata)) > 1


def test_the_default_message_limit_leaves_get_image_whole(
    database_url: str,
    authenticator,  # type: ignore[no-untyped-def]
    tokens,
    tmp_path: Path,
) -> None:
    fallback = tmp_path / "large.png"
    fallback.write_bytes(LARGE)
    with running_pair(database_url, authenticator, fallback_image=fallback) as pair:
        got = pair.image.GetImage(
            pb.GetImageRequest(image_id=hashlib.sha256(LARGE).hexdigest()),
            metadata=tokens.user("u1"),
        )
        assert got.data == LARGE
