"""The offline provider: a deterministic placeholder PNG, no network, no cost to anyone.

The picture is a plate on a tablecloth, 64 pixels wide with the requested
aspect ratio, its colours taken from a hash of the inputs: the same prompt,
model, size and quality always give the same bytes. Pure standard library.

It reports no token usage, so the use case commits the price table's
per-image figure for the model, quality and size: budgets, limits and the
ledger behave exactly as they would against OpenAI.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

from services.image.domain.images import GeneratedImage

WIDTH = 64


class OfflineProvider:
    name = "offline"

    def generate(
        self, prompt: str, model: str, size: str, quality: str, *, end_user: str = ""
    ) -> GeneratedImage:
        seed = hashlib.sha256("\n".join((model, size, quality, prompt)).encode("utf-8")).digest()
        width, height = _dimensions(size)
        return GeneratedImage(
            data=placeholder_png(seed, width, height),
            content_type="image/png",
            usage=None,
            provider=self.name,
        )

    def close(self) -> None:
        pass


def _dimensions(size: str) -> tuple[int, int]:
    try:
        w, h = (int(part) for part in size.lower().split("x"))
    except ValueError:
        return WIDTH, WIDTH
    if w <= 0 or h <= 0:
        return WIDTH, WIDTH
    return WIDTH, max(1, min(4 * WIDTH, round(WIDTH * h / w)))


def placeholder_png(seed: bytes, width: int, height: int) -> bytes:
    cloth = _muted(seed[0:3])
    food = _vivid(seed[3:6])
    plate = (238, 236, 230)
    rim = (214, 210, 200)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    radius = min(width, height) * 0.42
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            distance = ((x - cx) ** 2 + (y - cy) ** 2) ** 0.5
            if distance <= radius * 0.55:
                colour = food
            elif distance <= radius * 0.9:
                colour = plate
            elif distance <= radius:
                colour = rim
            else:
                # A two-tone check, like a tablecloth.
                colour = cloth if ((x // 8) + (y // 8)) % 2 else _darker(cloth)
            rows += bytes(colour)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)),
            _chunk(b"IDAT", zlib.compress(bytes(rows), 9)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _muted(rgb: bytes) -> tuple[int, int, int]:
    red, green, blue = (150 + b * 90 // 255 for b in rgb[:3])
    return red, green, blue


def _vivid(rgb: bytes) -> tuple[int, int, int]:
    red, green, blue = (60 + b * 180 // 255 for b in rgb[:3])
    return red, green, blue


def _darker(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    red, green, blue = (c * 85 // 100 for c in rgb)
    return red, green, blue
