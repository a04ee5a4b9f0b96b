"""GenerateImage, GetImage and GetCacheStats as plain Python: no gRPC here.

GenerateImage, in order: validate (nothing charged on bad input); analyze the
recipe and build the prompt (unless the caller gave one); serve a live exact
cache hit (reported to BudgetService at cost zero with what it saved);
otherwise reserve the most the image can cost, generate, store the bytes and
the cache entry, and commit the actual cost. A provider failure releases the
reservation. Every attempt leaves exactly one usage record at BudgetService,
and nothing is generated without a reservation: when BudgetService cannot be
reached, the request fails.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock, SystemClock
from services.common.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
)
from services.common.prices import PriceTable, estimate_prompt_tokens
from services.image.analyzer import analyze
from services.image.cache import CacheRepository, CacheStats, cache_key
from services.image.models import ImageRow
from services.image.prompts import build_prompt
from services.image.providers import GeneratedImage, Provider
from services.image.storage import SHA256_HEX, ImageStore
from services.image.validation import Defaults, GenerateCommand, ValidRequest, validate

log = logging.getLogger("recipeimage.image.generation")

MAX_ERROR_MESSAGE_CHARS = 500


# ---- what the use case needs from BudgetService -------------------------------------


class Outcome(enum.StrEnum):
    GENERATED = "generated"
    CACHE_HIT_EXACT = "cache_hit_exact"
    FAILED = "failed"
    REFUSED = "refused"


@dataclass(frozen=True)
class Usage:
    """One attempt's usage record, as BudgetService's ledger keeps it."""

    request_id: str
    user_id: str
    recipe_id: str
    prompt: str
    size: str
    quality: str
    model: str
    provider: str
    outcome: Outcome = Outcome.FAILED
    cost_micros: int = 0
    success: bool = False
    error_message: str = ""
    generation_time_ms: int = 0
    cached: bool = False
    cache_hit: str = ""
    cost_saved_micros: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class ReservationState(enum.StrEnum):
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    state: ReservationState
    amount_micros: int
    # True when the idempotency key was seen before: this is that reservation.
    replayed: bool


class Budget(Protocol):
    """BudgetService as the use case sees it (services/image/budget_client.py).

    Each method raises a DomainError: QuotaExceeded when over a limit, and
    Unavailable when BudgetService cannot be reached.
    """

    def reserve(self, user_id: str, amount_micros: int, idempotency_key: str) -> Reservation: ...

    def commit(self, reservation_id: str, actual_cost_micros: int, usage: Usage) -> None: ...

    def release(self, reservation_id: str, usage: Usage) -> None: ...

    def record_usage(self, usage: Usage) -> bool:
        """Write a record for an attempt without a reservation; True when the
        request_id already had one (nothing new was written)."""
        ...


# ---- results --------------------------------------------------------------------


class Source(enum.StrEnum):
    GENERATED = "generated"
    CACHE_EXACT = "cache_exact"


@dataclass(frozen=True)
class StoredImage:
    image_id: str
    content_type: str
    size_bytes: int
    created_at: datetime

    @classmethod
    def of(cls, row: ImageRow) -> StoredImage:
        return cls(row.image_id, row.content_type, row.size_bytes, row.created_at)


@dataclass(frozen=True)
class GenerateResult:
    image: StoredImage
    source: Source
    cost_micros: int
    cost_saved_micros: int
    similarity: float
    prompt: str
    request_id: str
    model: str
    size: str
    quality: str
    generation_time_ms: int = 0


@dataclass(frozen=True)
class _Hit:
    entry_id: int
    image: StoredImage
    cost_micros: int


# ---- the use cases --------------------------------------------------------------


class Images:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        store: ImageStore,
        budget: Budget,
        provider: Provider,
        prices: PriceTable,
        defaults: Defaults,
        cache_ttl: timedelta,
        clock: Clock | None = None,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.budget = budget
        self.provider = provider
        self.prices = prices
        self.defaults = defaults
        self.cache_ttl = cache_ttl
        self.clock = clock or SystemClock()

    # -- GenerateImage

    def generate(self, command: GenerateCommand) -> GenerateResult:
        request = validate(command, self.prices, self.defaults, self.clock.now().date())
        context = analyze(command.recipe)
        prompt = request.prompt or build_prompt(context)
        key = cache_key(request.model, request.size, request.quality, prompt)
        request_id = request.request_id or uuid.uuid4().hex
        usage = Usage(
            request_id=request_id,
            user_id=command.user_id,
            recipe_id=command.recipe.recipe_id,
            prompt=prompt,
            size=request.size,
            quality=request.quality,
            model=request.model,
            provider=self.provider.name,
        )

        hit = self._live_entry(key)
        if hit is not None:
            return self._serve_hit(hit, usage, request)

        amount = request.price.max_cost_micros(
            request.quality, request.size, estimate_prompt_tokens(prompt)
        )
        try:
            reservation = self.budget.reserve(command.user_id, amount, request_id)
        except QuotaExceeded as refusal:
            self.budget.record_usage(
                replace(usage, outcome=Outcome.REFUSED, error_message=_short(refusal.message))
            )
            raise
        if reservation.replayed:
            return self._replayed(reservation, key, usage)
        return self._generate(reservation, request, key, context.to_json(), usage)

    def _generate(
        self,
        reservation: Reservation,
        request: ValidRequest,
        key: str,
        context: dict[str, object],
        usage: Usage,
    ) -> GenerateResult:
        """With the money held: generate, keep the image, commit what it cost."""
        started = time.monotonic()
        try:
            generated = self.provider.generate(
                usage.prompt, request.model, request.size, request.quality
            )
        except Exception as exc:
            failed = replace(
                usage,
                outcome=Outcome.FAILED,
                error_message=_failure_message(exc),
                generation_time_ms=_elapsed_ms(started),
            )
            self._release(reservation, failed)
            raise
        elapsed_ms = _elapsed_ms(started)
        cost = request.price.actual_cost_micros(request.quality, request.size, generated.usage)
        spent = replace(
            usage,
            outcome=Outcome.GENERATED,
            provider=generated.provider,
            cost_micros=cost,
            success=True,
            generation_time_ms=elapsed_ms,
            input_tokens=_input_tokens(generated),
            output_tokens=_output_tokens(generated),
        )
        try:
            image = self._keep(generated, key, request, usage.prompt, context, cost)
        except Exception:
            # The provider was paid: the spend is committed even though the image is lost.
            log.exception(
                "storing a generated image failed", extra={"request_id": usage.request_id}
            )
            self._commit(
                reservation,
                cost,
                replace(spent, success=False, error_message="storing the image failed"),
            )
            raise
        self._commit(reservation, cost, spent)
        return GenerateResult(
            image=image,
            source=Source.GENERATED,
            cost_micros=cost,
            cost_saved_micros=0,
            similarity=0.0,
            prompt=usage.prompt,
            request_id=usage.request_id,
            model=request.model,
            size=request.size,
            quality=request.quality,
            generation_time_ms=elapsed_ms,
        )

    def _commit(self, reservation: Reservation, cost: int, spent: Usage) -> None:
        try:
            self.budget.commit(reservation.reservation_id, cost, spent)
        except DomainError as error:
            # Money the provider took and the ledger does not show: say so loudly,
            # with what reconciling it needs.
            log.error(
                "committing a generation's cost failed",
                extra={
                    "reservation_id": reservation.reservation_id,
                    "request_id": spent.request_id,
                    "user_id": spent.user_id,
                    "cost_micros": cost,
                    "error": error.message,
                },
            )
            raise

    def _release(self, reservation: Reservation, failed: Usage) -> None:
        """Give the money back; the provider's error, not this one, is what the caller sees."""
        try:
            self.budget.release(reservation.reservation_id, failed)
        except DomainError as error:
            # The reservation expires on its own; the attempt's record is what is lost.
            log.error(
                "releasing a reservation failed",
                extra={
                    "reservation_id": reservation.reservation_id,
                    "request_id": failed.request_id,
                    "error": error.message,
                },
            )

    def _live_entry(self, key: str) -> _Hit | None:
        with self.sessions.begin() as session:
            repo = CacheRepository(session)
            entry = repo.find_live(key, self.clock.now())
            if entry is None:
                return None
            row = repo.image(entry.image_id)
            assert row is not None  # the foreign key guarantees it
            return _Hit(entry.id, StoredImage.of(row), entry.cost_micros)

    def _serve_hit(self, hit: _Hit, usage: Usage, request: ValidRequest) -> GenerateResult:
        duplicate = self.budget.record_usage(
            replace(
                usage,
                outcome=Outcome.CACHE_HIT_EXACT,
                success=True,
                cached=True,
                cache_hit="exact",
                cost_saved_micros=hit.cost_micros,
            )
        )
        # A retry of an attempt already recorded is not a new use of the entry.
        if not duplicate:
            with self.sessions.begin() as session:
                CacheRepository(session).record_exact_hit(hit.entry_id, self.clock.now())
        return self._cached_result(hit, usage, saved=hit.cost_micros)

    def _replayed(self, reservation: Reservation, key: str, usage: Usage) -> GenerateResult:
        state = reservation.state
        if state is ReservationState.HELD:
            raise FailedPrecondition(
                "an attempt with this request_id is still in progress; retry it later",
                "REQUEST_IN_PROGRESS",
                {"request_id": usage.request_id},
            )
        if state is ReservationState.COMMITTED:
            hit = self._live_entry(key)
            if hit is not None:  # already paid for by the first attempt
                return self._cached_result(hit, usage, saved=0)
            raise FailedPrecondition(
                "an attempt with this request_id already completed; use a new request_id "
                "to generate again",
                "REQUEST_ALREADY_COMPLETED",
                {"request_id": usage.request_id},
            )
        raise FailedPrecondition(
            "an attempt with this request_id already failed; retry with a new request_id",
            "REQUEST_ALREADY_FAILED",
            {"request_id": usage.request_id, "state": state.value},
        )

    @staticmethod
    def _cached_result(hit: _Hit, usage: Usage, *, saved: int) -> GenerateResult:
        return GenerateResult(
            image=hit.image,
            source=Source.CACHE_EXACT,
            cost_micros=0,
            cost_saved_micros=saved,
            similarity=1.0,
            prompt=usage.prompt,
            request_id=usage.request_id,
            model=usage.model,
            size=usage.size,
            quality=usage.quality,
        )

    def _keep(
        self,
        generated: GeneratedImage,
        key: str,
        request: ValidRequest,
        prompt: str,
        context: dict[str, object],
        cost: int,
    ) -> StoredImage:
        """Store the bytes, then the image row and the cache entry.

        Bytes first, so a row never names a file that is not there. When another
        request stored an entry for the same key first, this one keeps its own
        image (it was paid for and is readable) and leaves the winner's entry.
        """
        image_id = self.store.put(generated.data, generated.content_type)
        now = self.clock.now()
        with self.sessions.begin() as session:
            repo = CacheRepository(session)
            repo.add_image(image_id, generated.content_type, len(generated.data), now)
            _entry, won = repo.add_entry(
                {
                    "cache_key": key,
                    "model": request.model,
                    "size": request.size,
                    "quality": request.quality,
                    "prompt": prompt,
                    "context": context,
                    "image_id": image_id,
                    "provider": generated.provider,
                    "cost_micros": cost,
                    "created_at": now,
                    "expires_at": now + self.cache_ttl,
                },
                now,
            )
            row = repo.image(image_id)
            assert row is not None
            if not won:
                log.info("cache entry raced; kept the first", extra={"cache_key": key})
            return StoredImage.of(row)

    # -- GetImage

    def image(self, image_id: str) -> tuple[StoredImage, bytes]:
        if not SHA256_HEX.match(image_id):
            raise InvalidArgument.field("image_id", "expected 64 lowercase hexadecimal characters")
        with self.sessions.begin() as session:
            row = CacheRepository(session).image(image_id)
            if row is None:
                raise NotFound(f"no image {image_id}")
            stored = StoredImage.of(row)
        return stored, self.store.get(stored.image_id, stored.content_type)

    # -- GetCacheStats

    def cache_stats(self) -> CacheStats:
        with self.sessions.begin() as session:
            return CacheRepository(session).stats(self.clock.now())


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _short(message: str) -> str:
    return message[:MAX_ERROR_MESSAGE_CHARS]


def _failure_message(error: Exception) -> str:
    if isinstance(error, DomainError):
        reason = getattr(getattr(error, "info", None), "reason", "")
        return _short(f"{reason}: {error.message}" if reason else error.message)
    return _short(f"internal error ({type(error).__name__})")


def _input_tokens(generated: GeneratedImage) -> int:
    usage = generated.usage
    return usage.input_text_tokens + usage.input_image_tokens if usage else 0


def _output_tokens(generated: GeneratedImage) -> int:
    usage = generated.usage
    return usage.output_image_tokens + usage.output_text_tokens if usage else 0
