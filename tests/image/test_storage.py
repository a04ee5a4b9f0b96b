"""The content-addressed image store and the offline provider's placeholder."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest

from services.image.adapters.image_store import CorruptImageError, ImageStore
from services.image.adapters.providers.offline import OfflineProvider


def test_put_names_the_bytes_by_their_sha256_and_get_returns_them(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    data = b"\x89PNG\r\n\x1a\n not really a png"
    image_id = store.put(data, "image/png")

    assert image_id == hashlib.sha256(data).hexdigest()
    path = tmp_path / image_id[:2] / image_id[2:4] / f"{image_id}.png"
    assert path.read_bytes() == data
    assert store.get(image_id, "image/png") == data
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_storing_the_same_bytes_twice_is_harmless(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    assert store.put(b"same", "image/png") == store.put(b"same", "image/png")
    assert len(list(tmp_path.rglob("*.png"))) == 1


def test_the_extension_follows_the_content_type(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    image_id = store.put(b"jpeg bytes", "image/jpeg")
    assert store.path(image_id, "image/jpeg").suffix == ".jpg"
    with pytest.raises(ValueError, match="unsupported image content type"):
        store.put(b"x", "text/html")


def test_a_damaged_or_missing_file_is_not_served(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    image_id = store.put(b"original", "image/png")
    store.path(image_id, "image/png").write_bytes(b"tampered")
    with pytest.raises(CorruptImageError):
        store.get(image_id, "image/png")
    with pytest.raises(FileNotFoundError):
        store.get("0" * 64, "image/png")
    with pytest.raises(ValueError, match="SHA-256"):
        store.path("../../etc/passwd", "image/png")


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ImageStore(tmp_path)

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("services.image.adapters.image_store.os.fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        store.put(b"lost", "image/png")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def decoded_rows(data: bytes) -> bytes:
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    return zlib.decompress(data[idat + 4 : idat + 4 + length])


def test_the_offline_placeholder_is_a_small_deterministic_png() -> None:
    provider = OfflineProvider()
    first = provider.generate("A bowl of soup", "gpt-image-2", "1024x1024", "medium")
    again = provider.generate("A bowl of soup", "gpt-image-2", "1024x1024", "medium")

    assert first == again
    assert (first.content_type, first.provider, first.usage) == ("image/png", "offline", None)
    assert png_size(first.data) == (64, 64)
    assert len(decoded_rows(first.data)) == 64 * (1 + 64 * 3)
    assert len(first.data) < 4096
    others = {
        provider.generate(*args).data
        for args in (
            ("A bowl of stew", "gpt-image-2", "1024x1024", "medium"),
            ("A bowl of soup", "gpt-image-1.5", "1024x1024", "medium"),
            ("A bowl of soup", "gpt-image-2", "1024x1024", "high"),
        )
    }
    assert len(others) == 3 and first.data not in others


def test_the_offline_placeholder_keeps_the_aspect_ratio() -> None:
    tall = OfflineProvider().generate("soup", "gpt-image-2", "1024x1536", "low")
    assert png_size(tall.data) == (64, 96)
