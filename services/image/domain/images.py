"""Images as values: a stored image's metadata, a provider's fresh image, and
the rule for an image id (the SHA-256 hex of its bytes). No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import InvalidArgument, Unavailable
from services.common.prices import TokenUsage

SHA256_HEX = re.compile(r"[0-9a-f]{64}")  # used with fullmatch: "$" would accept a trailing newline


def check_image_id(image_id: str) -> None:
    """InvalidArgument unless image_id can name an image."""
    if not SHA256_HEX.fullmatch(image_id):
        raise InvalidArgument.field("image_id", "expected 64 lowercase hexadecimal characters")


def store_unavailable(message: str) -> Unavailable:
    """The image store (local directory or S3 bucket) failed a read or a write."""
    return Unavailable(message, reason="IMAGE_STORE_UNAVAILABLE")


@dataclass(frozen=True)
class StoredImage:
    image_id: str
    content_type: str
    size_bytes: int
    created_at: datetime


@dataclass(frozen=True)
class GeneratedImage:
    """What a provider made, before it is stored."""

    data: bytes
    content_type: str
    # What the provider reports it used; None when it reports nothing (the
    # commit then charges the price table's per-image figure).
    usage: TokenUsage | None
    provider: str

    @property
    def input_tokens(self) -> int:
        usage = self.usage
        return usage.input_text_tokens + usage.input_image_tokens if usage else 0

    @property
    def output_tokens(self) -> int:
        usage = self.usage
        return usage.output_image_tokens + usage.output_text_tokens if usage else 0
