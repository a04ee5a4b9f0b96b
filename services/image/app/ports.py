"""What the use cases need from outside, as protocols: BudgetService (its gRPC
client is adapters/budget_client.py) and an image provider (adapters/providers/)."""

from __future__ import annotations

from typing import Protocol

from services.image.domain.accounting import AttemptState, Reservation, Usage
from services.image.domain.images import GeneratedImage
from services.image.domain.quote import BudgetView
from services.image.domain.settlement import RecordAnswer


class Budget(Protocol):
    """BudgetService as the use cases see it.

    Each method raises a DomainError: QuotaExceeded when over a limit, and
    Unavailable when BudgetService cannot be reached.
    """

    def admit(self, user_id: str, request_id: str = "") -> AttemptState | None:
        """Let a GenerateImage call go on, or raise why not: the user's block
        (PermissionDenied) or a request rate (QuotaExceeded). With a
        request_id, what BudgetService holds for that attempt."""
        ...

    def check(self, user_id: str, amount_micros: int, *, include_admission: bool) -> BudgetView:
        """What a reservation of amount_micros would meet now, without taking
        anything (and, with include_admission, what Admit and ReserveBudget
        would refuse with)."""
        ...

    def reserve(self, user_id: str, amount_micros: int, idempotency_key: str) -> Reservation: ...

    def commit(self, reservation_id: str, actual_cost_micros: int, usage: Usage) -> None: ...

    def release(self, reservation_id: str, usage: Usage) -> None: ...

    def record_usage(self, usage: Usage) -> bool:
        """Write a record for an attempt without a reservation; True when the
        request_id already had one (nothing new was written)."""
        ...

    def record_usage_batch(self, usages: list[Usage]) -> list[RecordAnswer]:
        """Write each record as record_usage would, on its own: one answer a
        record, in order. Raises (Unavailable) only when the batch was not taken."""
        ...


class Provider(Protocol):
    name: str

    def generate(
        self, prompt: str, model: str, size: str, quality: str, *, end_user: str = ""
    ) -> GeneratedImage:
        """end_user: a stable, salted hash of the user id, for the provider's
        abuse monitoring (never the raw id); empty: none."""
        ...

    def close(self) -> None: ...


class ImageStorage(Protocol):
    """Content-addressed image bytes: the local directory
    (adapters/image_store.ImageStore) or an S3-compatible bucket
    (adapters/s3_image_store.S3ImageStore)."""

    def put(self, data: bytes, content_type: str) -> str:
        """Store the bytes durably (a no-op when they are there) and return their
        image id (SHA-256 hex); OSError when they could not be stored."""
        ...

    def get(self, image_id: str, content_type: str) -> bytes:
        """The bytes: FileNotFoundError when absent, CorruptImageError when they
        no longer hash to their id, ImageStoreUnavailable (an OSError) when the
        store cannot answer."""
        ...

    def delete(self, image_id: str, content_type: str) -> None:
        """Remove the bytes (absent bytes are fine); OSError when it could not."""
        ...
