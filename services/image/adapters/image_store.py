"""Content-addressed image bytes on local disk (the S3-compatible store is
adapters/s3_image_store.py; both keep the contract of app/ports.ImageStorage).

An image is named by the SHA-256 of its bytes and lives at
<root>/ab/cd/<sha256>.<ext>. A write goes to a temporary file in the same
directory, is fsynced and renamed into place, so a reader never sees half an
image and a crash leaves at most a stray temporary file. Writing the same bytes
twice is harmless: the name is the content.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from services.image.domain.images import SHA256_HEX

_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
}


class CorruptImageError(RuntimeError):
    """Stored bytes no longer hash to their name."""


class ImageStoreUnavailable(OSError):
    """The store could not be reached, or refused the call: nothing is known
    about the bytes (never a sign that they are gone)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_type_of(data: bytes) -> str | None:
    """The content type of PNG, JPEG or WebP bytes, from their magic numbers."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def extension_for(content_type: str) -> str:
    try:
        return _EXTENSIONS[content_type]
    except KeyError:
        raise ValueError(f"unsupported image content type {content_type!r}") from None


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, image_id: str, content_type: str) -> Path:
        if not SHA256_HEX.fullmatch(image_id):
            raise ValueError(f"not a SHA-256 hex digest: {image_id!r}")
        return (
            self.root / image_id[:2] / image_id[2:4] / f"{image_id}.{extension_for(content_type)}"
        )

    def put(self, data: bytes, content_type: str) -> str:
        """Store the bytes durably and return their image id (SHA-256 hex)."""
        image_id = sha256_hex(data)
        target = self.path(image_id, content_type)
        if target.exists():
            return image_id
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)
        return image_id

    def get(self, image_id: str, content_type: str) -> bytes:
        """The stored bytes; FileNotFoundError when absent, CorruptImageError when damaged."""
        data = self.path(image_id, content_type).read_bytes()
        if sha256_hex(data) != image_id:
            raise CorruptImageError(f"stored image {image_id} does not match its SHA-256")
        return data

    def delete(self, image_id: str, content_type: str) -> None:
        """Remove the bytes; absent bytes are not an error."""
        self.path(image_id, content_type).unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
