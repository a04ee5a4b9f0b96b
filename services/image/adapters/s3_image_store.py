"""Content-addressed image bytes in an S3-compatible bucket (AWS S3, MinIO,
Ceph, R2...), through boto3.

An image is the object <prefix>ab/cd/<sha256>.<ext>, the local store's layout
under a key prefix. A PUT of S3 is atomic (a reader sees the whole object or
none) and the key is the content, so writing the same bytes twice is harmless;
a write first asks whether the object is there (HEAD) to spare the upload.
A read checks the bytes against their name, as the local store does.

Errors keep the store contract (app/ports.ImageStorage): a missing object is
FileNotFoundError, anything else (no connection, a timeout, a missing bucket,
refused credentials) is ImageStoreUnavailable, so a store outage is never
mistaken for a lost image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from services.image.adapters.image_store import (
    CorruptImageError,
    ImageStoreUnavailable,
    extension_for,
    sha256_hex,
)
from services.image.domain.images import SHA256_HEX

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class S3Location:
    """Where and how to reach the bucket. Empty credentials, region or endpoint:
    boto3's own chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, an instance role,
    AWS_REGION...)."""

    bucket: str
    prefix: str = "images/"
    endpoint_url: str = ""
    region: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""
    timeout_seconds: float = 10.0
    max_attempts: int = 3


class S3ImageStore:
    def __init__(self, location: S3Location) -> None:
        self.location = location
        self.client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint_url or None,
            region_name=location.region or None,
            aws_access_key_id=location.access_key_id or None,
            aws_secret_access_key=location.secret_access_key or None,
            config=Config(
                connect_timeout=location.timeout_seconds,
                read_timeout=location.timeout_seconds,
                retries={"max_attempts": location.max_attempts, "mode": "standard"},
                # Path-style works with every S3-compatible server (MinIO, moto).
                s3={"addressing_style": "path"},
            ),
        )

    def key(self, image_id: str, content_type: str) -> str:
        if not SHA256_HEX.fullmatch(image_id):
            raise ValueError(f"not a SHA-256 hex digest: {image_id!r}")
        name = f"{image_id}.{extension_for(content_type)}"
        return f"{self.location.prefix}{image_id[:2]}/{image_id[2:4]}/{name}"

    def put(self, data: bytes, content_type: str) -> str:
        """Store the bytes and return their image id (SHA-256 hex)."""
        image_id = sha256_hex(data)
        key = self.key(image_id, content_type)
        if self._exists(key):
            return image_id
        self._call(
            "put",
            key,
            lambda: self.client.put_object(
                Bucket=self.location.bucket, Key=key, Body=data, ContentType=content_type
            ),
        )
        return image_id

    def get(self, image_id: str, content_type: str) -> bytes:
        key = self.key(image_id, content_type)
        body: bytes = self._call(
            "get",
            key,
            lambda: self.client.get_object(Bucket=self.location.bucket, Key=key)["Body"].read(),
        )
        if sha256_hex(body) != image_id:
            raise CorruptImageError(f"stored image {image_id} does not match its SHA-256")
        return body

    def delete(self, image_id: str, content_type: str) -> None:
        """Remove the object (S3 answers a delete of a missing key with success)."""
        key = self.key(image_id, content_type)
        self._call(
            "delete", key, lambda: self.client.delete_object(Bucket=self.location.bucket, Key=key)
        )

    def _exists(self, key: str) -> bool:
        try:
            self._call(
                "head", key, lambda: self.client.head_object(Bucket=self.location.bucket, Key=key)
            )
        except FileNotFoundError:
            return False
        return True

    def _call(self, action: str, key: str, call: Any) -> Any:
        try:
            return call()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise FileNotFoundError(f"s3://{self.location.bucket}/{key}") from None
            raise ImageStoreUnavailable(
                f"S3 {action} of s3://{self.location.bucket}/{key} failed: {code or error}"
            ) from error
        except BotoCoreError as error:
            raise ImageStoreUnavailable(
                f"S3 {action} of s3://{self.location.bucket}/{key} failed: {error}"
            ) from error
