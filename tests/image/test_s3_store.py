"""The S3-compatible image store against a real S3 HTTP endpoint (moto's server
mode on a loopback port): the adapter on its own, then ImageService storing and
serving through it, and what a failing store does to GenerateImage and GetImage."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import grpc
import pytest
from recipeimage.image.v1 import image_service_pb2 as pb
from sqlalchemy import select

from services.image.adapters.image_store import CorruptImageError, ImageStoreUnavailable
from services.image.adapters.s3_image_store import S3ImageStore
from services.image.settings import ImageSettings
from services.image.store.models import CacheEntry
from tests.image.conftest import SOUP, generate_request, ledger, refusal, reservation_states
from tests.support.image_server import running_pair
from tests.support.s3_server import RunningS3, closed_endpoint, s3_server

PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100


@pytest.fixture(scope="module")
def s3() -> Iterator[RunningS3]:
    with s3_server() as running:
        yield running


def s3_overrides(location) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """ImageSettings fields that point ImageService at the bucket."""
    return {
        "image_store": "s3",
        "s3_bucket": location.bucket,
        "s3_prefix": location.prefix,
        "s3_endpoint_url": location.endpoint_url,
        "s3_region": location.region,
        "s3_access_key_id": location.access_key_id,
        "s3_secret_access_key": location.secret_access_key,
        "s3_timeout_seconds": location.timeout_seconds,
        "s3_max_attempts": location.max_attempts,
    }


# ---- the adapter ---------------------------------------------------------------


def test_put_names_the_object_by_its_sha256_under_the_prefix(s3: RunningS3) -> None:
    location = s3.bucket(prefix="photos/")
    store = S3ImageStore(location)

    image_id = store.put(PNG, "image/png")

    assert image_id == hashlib.sha256(PNG).hexdigest()
    assert s3.keys(location) == [f"photos/{image_id[:2]}/{image_id[2:4]}/{image_id}.png"]
    assert store.get(image_id, "image/png") == PNG
    head = s3.client().head_object(Bucket=location.bucket, Key=s3.keys(location)[0])
    assert head["ContentType"] == "image/png"


def test_the_same_bytes_twice_are_one_object(s3: RunningS3) -> None:
    location = s3.bucket()
    store = S3ImageStore(location)
    assert store.put(PNG, "image/png") == store.put(PNG, "image/png")
    assert len(s3.keys(location)) == 1


def test_missing_damaged_and_deleted_objects(s3: RunningS3) -> None:
    location = s3.bucket()
    store = S3ImageStore(location)
    image_id = store.put(PNG, "image/png")

    with pytest.raises(FileNotFoundError):
        store.get("0" * 64, "image/png")
    s3.client().put_object(Bucket=location.bucket, Key=store.key(image_id, "image/png"), Body=b"x")
    with pytest.raises(CorruptImageError):
        store.get(image_id, "image/png")

    store.delete(image_id, "image/png")
    store.delete(image_id, "image/png")  # deleting what is gone is fine
    assert s3.keys(location) == []
    with pytest.raises(ValueError, match="SHA-256"):
        store.key("../../etc/passwd", "image/png")


def test_a_missing_bucket_is_an_unavailable_store_never_a_missing_image(s3: RunningS3) -> None:
    store = S3ImageStore(s3.missing_bucket())
    with pytest.raises(ImageStoreUnavailable, match="NoSuchBucket"):
        store.put(PNG, "image/png")
    with pytest.raises(ImageStoreUnavailable):
        store.get(hashlib.sha256(PNG).hexdigest(), "image/png")


def test_an_endpoint_that_is_down_is_an_unavailable_store(s3: RunningS3) -> None:
    store = S3ImageStore(s3.location("anything", endpoint_url=closed_endpoint()))
    for call in (
        lambda: store.put(PNG, "image/png"),
        lambda: store.get(hashlib.sha256(PNG).hexdigest(), "image/png"),
        lambda: store.delete(hashlib.sha256(PNG).hexdigest(), "image/png"),
    ):
        with pytest.raises(ImageStoreUnavailable):
            call()


def test_the_settings_choose_the_store() -> None:
    settings = ImageSettings.from_env(
        {
            "RECIPEIMAGE_IMAGE_STORE": "s3",
            "RECIPEIMAGE_S3_BUCKET": "photos",
            "RECIPEIMAGE_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "RECIPEIMAGE_S3_PREFIX": "/recipes/",
        }
    )
    assert (settings.image_store, settings.s3_bucket, settings.s3_prefix) == (
        "s3",
        "photos",
        "recipes/",
    )
    assert ImageSettings.from_env({}).image_store == "local"
    from services.common.config import ConfigError

    with pytest.raises(ConfigError, match="RECIPEIMAGE_S3_BUCKET"):
        ImageSettings.from_env({"RECIPEIMAGE_IMAGE_STORE": "s3"})
    with pytest.raises(ConfigError, match="RECIPEIMAGE_IMAGE_STORE"):
        ImageSettings.from_env({"RECIPEIMAGE_IMAGE_STORE": "ftp"})


# ---- ImageService on S3 --------------------------------------------------------


def test_generate_then_get_image_through_the_bucket(
    s3: RunningS3, database_url: str, authenticator, tokens
) -> None:
    location = s3.bucket()
    with running_pair(database_url, authenticator, **s3_overrides(location)) as pair:
        generated = pair.image.GenerateImage(
            generate_request(request_id="g1"), metadata=tokens.user("u1")
        )
        image_id = generated.image.image_id

        got = pair.image.GetImage(pb.GetImageRequest(image_id=image_id), metadata=tokens.user("u1"))
        streamed = list(
            pair.image.StreamImage(
                pb.StreamImageRequest(image_id=image_id), metadata=tokens.user("u1")
            )
        )

        assert hashlib.sha256(got.data).hexdigest() == image_id
        assert b"".join(m.data for m in streamed) == got.data
        assert s3.keys(location) == [f"images/{image_id[:2]}/{image_id[2:4]}/{image_id}.png"]
        assert list(pair.store_dir.rglob("*.png")) == []  # nothing on local disk
        again = pair.image.GenerateImage(
            generate_request(request_id="g2"), metadata=tokens.user("u1")
        )
        assert again.image.image_id == image_id and again.cost_micros == 0


def test_a_store_that_fails_a_write_is_a_clear_unavailable_and_caches_nothing(
    s3: RunningS3, database_url: str, authenticator, tokens
) -> None:
    """The same contract as a failing local store: the provider was paid, so the
    spend is committed as a failed attempt (success false, "storing the image
    failed"); the caller gets UNAVAILABLE / IMAGE_STORE_UNAVAILABLE, and no
    cache entry names an image that is not there."""
    with running_pair(database_url, authenticator, **s3_overrides(s3.missing_bucket())) as pair:
        error, details = refusal(
            lambda: pair.image.GenerateImage(
                generate_request(request_id="lost"), metadata=tokens.user("u1")
            )
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert details["ErrorInfo"].reason == "IMAGE_STORE_UNAVAILABLE"
        assert "new request_id" in error.details()
        [record] = ledger(pair)
        assert (record.request_id, record.outcome, record.success) == ("lost", "generated", False)
        assert record.error_message == "storing the image failed"
        assert reservation_states(pair) == ["committed"]
        with pair.app.sessions.begin() as session:
            assert session.scalars(select(CacheEntry)).all() == []


def test_a_store_that_goes_down_is_unavailable_for_get_image_and_nothing_is_forgotten(
    database_url: str, authenticator, tokens
) -> None:
    """A read failure is not a lost image: the cache entry keeps serving once
    the store is back (here: the entry is still live, and the same bytes are
    served again by a store at the same place)."""
    with s3_server() as own:
        location = own.bucket()
        with running_pair(database_url, authenticator, **s3_overrides(location)) as pair:
            image_id = pair.image.GenerateImage(
                generate_request(request_id="g1"), metadata=tokens.user("u1")
            ).image.image_id
            own.stop()

            for call in (
                lambda: pair.image.GetImage(
                    pb.GetImageRequest(image_id=image_id), metadata=tokens.user("u1")
                ),
                lambda: list(
                    pair.image.StreamImage(
                        pb.StreamImageRequest(image_id=image_id), metadata=tokens.user("u1")
                    )
                ),
            ):
                error, details = refusal(call)
                assert error.code() == grpc.StatusCode.UNAVAILABLE
                assert details["ErrorInfo"].reason == "IMAGE_STORE_UNAVAILABLE"
            with pair.app.sessions.begin() as session:
                [entry] = session.scalars(select(CacheEntry)).all()
                assert entry.invalidated_at is None
            # The cache still answers (the bytes are not needed for a hit).
            hit = pair.image.GenerateImage(
                pb.GenerateImageRequest(recipe=SOUP, request_id="g2"), metadata=tokens.user("u1")
            )
            assert hit.image.image_id == image_id
