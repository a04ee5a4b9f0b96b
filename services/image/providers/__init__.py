"""Image providers: something that turns a prompt into image bytes.

`offline` draws a deterministic placeholder without any network; `openai`
calls OpenAI's Images API. main.py picks one (RECIPEIMAGE_PROVIDER).

A provider raises services.common.errors domain errors for the failures a
caller can act on (ContentRefused, QuotaExceeded, DeadlineExceeded,
Unavailable); the use case releases the reservation and passes them on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.common.prices import TokenUsage


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    content_type: str
    # What the provider reports it used; None when it reports nothing (the
    # commit then charges the price table's per-image figure).
    usage: TokenUsage | None
    provider: str


class Provider(Protocol):
    name: str

    def generate(self, prompt: str, model: str, size: str, quality: str) -> GeneratedImage: ...

    def close(self) -> None: ...
