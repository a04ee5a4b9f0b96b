"""A Provider that times each generation and counts its failures by reason."""

from __future__ import annotations

import time

from services.image.app.meters import ProviderMeters
from services.image.app.ports import Provider
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
            self.meters.error(failure_reason(error))
            raise
        finally:
            self.meters.seconds(time.perf_counter() - started)

    def close(self) -> None:
        self.inner.close()


def failure_reason(error: Exception) -> str:
    """The error's ErrorInfo reason (a constant of the code), else UNEXPECTED."""
    reason = getattr(getattr(error, "info", None), "reason", None)
    return reason if isinstance(reason, str) and reason else UNEXPECTED
