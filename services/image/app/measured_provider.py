"""A Provider that times each generation and counts its failures by reason."""

from __future__ import annotations

import time

from services.image.app.meters import ProviderMeters
from services.image.app.ports import Provider
from services.image.domain.failures import reason_of
from services.image.domain.images import GeneratedImage

UNEXPECTED = "UNEXPECTED"


class MeasuredProvider:
    def __init__(self, inner: Provider, meters: ProviderMeters) -> None:
        self.inner = inner
        self.name = inner.name
        self.meters = meters

    def generate(
        self, prompt: str, model: str, size: str, quality: str, *, end_user: str = ""
    ) -> GeneratedImage:
        started = time.perf_counter()
        try:
            return self.inner.generate(prompt, model, size, quality, end_user=end_user)
        except Exception as error:
            self.meters.error(reason_of(error) or UNEXPECTED)
            raise
        finally:
            self.meters.seconds(time.perf_counter() - started)

    def close(self) -> None:
        self.inner.close()
