"""ImageService's use cases as one value, as main.py wires them and the
servicer calls them."""

from __future__ import annotations

from dataclasses import dataclass

from services.image.app.cache_admin import CacheAdmin
from services.image.app.generate import GenerateImage
from services.image.app.in_flight import InFlight
from services.image.app.queries import ImageQueries
from services.image.app.quote import QuoteImage
from services.image.app.retention import ImageRetention
from services.image.app.settler import Settler


@dataclass(frozen=True)
class ImageUseCases:
    generate_image: GenerateImage
    quote_image: QuoteImage
    queries: ImageQueries
    cache_admin: CacheAdmin
    settler: Settler
    in_flight: InFlight
    retention: ImageRetention

    def flush(self, timeout: float | None = None) -> bool:
        """Write the cache hits' counts gathered so far, and wait until every
        hit's usage record answered so far has been sent to BudgetService (or
        left to the settler); False on timeout."""
        self.generate_image.cache.flush_hits()
        return self.settler.records.flush(timeout)
