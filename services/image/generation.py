"""GenerateImage, GetImage, GetCacheStats and the cache admin as plain Python: no gRPC here.

GenerateImage, in order:

1. Validate (nothing charged on bad input); analyze the recipe and build the
   prompt (unless the caller gave one).
2. Cache: a live exact entry; then, when the caller allows it and the prompt
   was built, an image of the same dish (cache_policy). A hit is reported to
   BudgetService at cost zero with what it saved.
3. Single flight: claim the generation lease of the cache key in the database.
   A request that finds the lease held waits (polling, bounded) for the
   winner's entry and serves it as an exact hit; if the lease is released
   without an entry it claims it; if the wait runs out it generates anyway.
4. Reserve the most the image can cost, generate, store the bytes, the
   cache entry and the pending commit (settlement.py's outbox) in one
   transaction, then commit the actual cost from the usage the provider reports.
5. A provider failure releases the reservation with a failed record (also
   through the outbox), or, with a fallback image configured, serves that
   uncharged (outcome FALLBACK).

Every attempt leaves exactly one usage record at BudgetService, and nothing is
generated without a reservation: when BudgetService cannot be reached before
the generation, the request fails. When it cannot be reached after it, the
caller still gets the image (it is paid for and stored) and the outbox row
stays until the settler commits or releases it. A generation whose caller has
gone away runs to its end (it is paid for either way) and lands in the cache.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from services.common import paging
from services.common.clock import Clock, SystemClock
from services.common.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    QuotaExceeded,
    Violations,
)
from services.common.prices import PriceTable, estimate_prompt_tokens
from services.image.accounting import Budget, Outcome, Reservation, ReservationState, Usage
from services.image.analyzer import RecipeContext, analyze
from services.image.cache import CacheRepository, CacheStats, LeaseRepository, cache_key
from services.image.cache_policy import Candidate, best_similar, cost_saved, quality_rank
from services.image.models import CacheEntry, ImageRow
from services.image.prompts import build_prompt
from services.image.providers import GeneratedImage, Provider
from services.image.settlement import Kind, Settled, Settlements
from services.image.similarity import DEFAULT_THRESHOLD, effective_threshold, match_key
from services.image.storage import SHA256_HEX, ImageStore
from services.image.validation import Defaults, GenerateCommand, ValidRequest, validate

log = logging.getLogger("recipeimage.image.generation")

MAX_ERROR_MESSAGE_CHARS = 500
# GetCacheStats' most-used entries (AIP-158): a page of 10 unless asked, 100 at most.
STATS_PAGE_SIZE = 10
MAX_STATS_PAGE_SIZE = 100
DEFAULT_LEASE_TTL = timedelta(minutes=10)
DEFAULT_SINGLE_FLIGHT_WAIT_SECONDS = 300.0
FIRST_POLL_SECONDS = 0.05
LONGEST_POLL_SECONDS = 0.5


# ---- results --------------------------------------------------------------------


class Source(enum.StrEnum):
    GENERATED = "generated"
    CACHE_EXACT = "cache_exact"
    CACHE_SIMILAR = "cache_similar"
    FALLBACK = "fallback"


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
    context: RecipeContext | None = None
    fallback_reason: str = ""
    fallback_message: str = ""


@dataclass(frozen=True)
class CachedEntry:
    """One cache entry as GetCacheStats lists it."""

    entry_id: int
    image: StoredImage
    model: str
    size: str
    quality: str
    dish: str
    uses: int
    exact_hits: int
    similar_hits: int
    cost_micros: int
    cost_saved_micros: int
    created_at: datetime
    expires_at: datetime
    last_hit_at: datetime | None


@dataclass(frozen=True)
class CacheStatsPage:
    stats: CacheStats
    most_used: list[CachedEntry]
    next_page_token: str


@dataclass(frozen=True)
class _Lookup:
    key: str
    # None: no similar lookup (not allowed, a caller's prompt, or an unknown dish).
    match_key: str | None
    context: RecipeContext
    quality: str
    quality_rank: int
    threshold: float
    # What the request would be charged without usage: the price table's figure.
    requested_micros: int


@dataclass(frozen=True)
class _Hit:
    entry_id: int
    image: StoredImage
    similar: bool
    similarity: float
    saved_micros: int


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
        similarity_threshold: float = DEFAULT_THRESHOLD,
        lease_ttl: timedelta = DEFAULT_LEASE_TTL,
        single_flight_wait_seconds: float = DEFAULT_SINGLE_FLIGHT_WAIT_SECONDS,
        fallback: StoredImage | None = None,
        settlements: Settlements | None = None,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.budget = budget
        self.provider = provider
        self.prices = prices
        self.defaults = defaults
        self.cache_ttl = cache_ttl
        self.clock = clock or SystemClock()
        self.similarity_threshold = similarity_threshold
        self.lease_ttl = lease_ttl
        self.single_flight_wait_seconds = single_flight_wait_seconds
        self.fallback = fallback
        self.settlements = settlements or Settlements(sessions, budget, self.clock)

    # -- GenerateImage

    def generate(self, command: GenerateCommand) -> GenerateResult:
        request = validate(command, self.prices, self.defaults, self.clock.now().date())
        context = analyze(command.recipe)
        built = not request.prompt
        prompt = request.prompt or build_prompt(context, request.price.max_prompt_chars)
        key = cache_key(request.model, request.size, request.quality, prompt)
        usage = Usage(
            request_id=request.request_id or uuid.uuid4().hex,
            user_id=command.user_id,
            recipe_id=command.recipe.recipe_id,
            prompt=prompt,
            size=request.size,
            quality=request.quality,
            model=request.model,
            provider=self.provider.name,
        )
        lookup = _Lookup(
            key=key,
            match_key=(
                match_key(request.model, request.size, context)
                if request.allow_similar and built
                else None
            ),
            context=context,
            quality=request.quality,
            quality_rank=quality_rank(request.quality),
            threshold=effective_threshold(self.similarity_threshold, request.min_similarity),
            requested_micros=request.price.per_image_micros(request.quality, request.size),
        )

        hit = self._find(lookup)
        if hit is not None:
            return self._serve_hit(hit, usage, context)

        owner = uuid.uuid4().hex
        claimed = self._claim(key, owner)
        if not claimed:
            hit, claimed = self._wait_for_winner(lookup, owner)
            if hit is not None:
                return self._serve_hit(hit, usage, context)
        try:
            if claimed:
                # The winner of a lease released a moment ago may have left its entry.
                hit = self._find(lookup)
                if hit is not None:
                    return self._serve_hit(hit, usage, context)
            return self._reserve_and_generate(request, lookup, usage)
        finally:
            if claimed:
                self._release_lease(key, owner)

    def _reserve_and_generate(
        self, request: ValidRequest, lookup: _Lookup, usage: Usage
    ) -> GenerateResult:
        amount = request.price.max_cost_micros(
            request.quality, request.size, estimate_prompt_tokens(usage.prompt)
        )
        try:
            reservation = self.budget.reserve(usage.user_id, amount, usage.request_id)
        except QuotaExceeded as refusal:
            self.budget.record_usage(
                replace(usage, outcome=Outcome.REFUSED, error_message=_short(refusal.message))
            )
            raise
        if reservation.replayed:
            return self._replayed(reservation, lookup, usage)
        return self._generate(reservation, request, lookup, usage)

    def _generate(
        self,
        reservation: Reservation,
        request: ValidRequest,
        lookup: _Lookup,
        usage: Usage,
    ) -> GenerateResult:
        """With the money held: generate, keep the image, commit what it cost."""
        started = time.monotonic()
        try:
            generated = self.provider.generate(
                usage.prompt, request.model, request.size, request.quality
            )
        except Exception as exc:
            return self._failed(reservation, usage, lookup, exc, _elapsed_ms(started))
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
            image, pending = self._keep(generated, request, lookup, reservation, cost, spent)
        except Exception:
            # The provider was paid: the spend is committed even though the image is lost.
            log.exception(
                "storing a generated image failed", extra={"request_id": usage.request_id}
            )
            lost = replace(spent, success=False, error_message="storing the image failed")
            pending = self.settlements.record_alone(
                Kind.COMMIT, reservation.reservation_id, cost, lost
            )
            self._commit(pending, reservation, cost, lost)
            raise
        self._commit(pending, reservation, cost, spent)
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
            context=lookup.context,
        )

    def _failed(
        self,
        reservation: Reservation,
        usage: Usage,
        lookup: _Lookup,
        error: Exception,
        elapsed_ms: int,
    ) -> GenerateResult:
        """The provider failed: give the money back and record the attempt; serve
        the fallback image when there is one, else pass the error on."""
        if not isinstance(error, DomainError):
            log.exception("the image provider failed unexpectedly", exc_info=error)
        failed = replace(
            usage,
            outcome=Outcome.FAILED,
            error_message=_failure_message(error),
            generation_time_ms=elapsed_ms,
        )
        if self.fallback is None:
            self._release(reservation, failed)
            raise error
        self._release(reservation, replace(failed, outcome=Outcome.FALLBACK, fallback_used=True))
        reason, message = _reason_and_message(error)
        return GenerateResult(
            image=self.fallback,
            source=Source.FALLBACK,
            cost_micros=0,
            cost_saved_micros=0,
            similarity=0.0,
            prompt=usage.prompt,
            request_id=usage.request_id,
            model=usage.model,
            size=usage.size,
            quality=usage.quality,
            generation_time_ms=elapsed_ms,
            context=lookup.context,
            fallback_reason=reason,
            fallback_message=message,
        )

    def _commit(
        self, pending: int | None, reservation: Reservation, cost: int, spent: Usage
    ) -> None:
        """Charge what the image cost. `pending` is its outbox row: when BudgetService
        cannot be reached the row stays for the settler and the caller still gets
        the image it paid for. A final refusal (the row is abandoned and logged)
        fails the call, as does any failure when there is no row to fall back on."""
        attempt = self.settlements.attempt(
            pending, 1, Kind.COMMIT, reservation.reservation_id, cost, spent
        )
        if attempt.outcome is Settled.ACKNOWLEDGED:
            return
        error = attempt.error
        if attempt.outcome is Settled.PENDING and pending is not None:
            return
        if pending is None:
            # Money the provider took and the ledger does not show: say so loudly,
            # with what reconciling it needs.
            log.error(
                "committing a generation's cost failed",
                extra={
                    "reservation_id": reservation.reservation_id,
                    "request_id": spent.request_id,
                    "user_id": spent.user_id,
                    "cost_micros": cost,
                    "error": error.message if isinstance(error, DomainError) else repr(error),
                },
            )
        assert error is not None
        raise error

    def _release(self, reservation: Reservation, failed: Usage) -> None:
        """Give the money back and record the attempt, through the outbox: when
        BudgetService cannot be reached the settler does it later. The provider's
        error, not this one, is what the caller sees."""
        pending = self.settlements.record_alone(Kind.RELEASE, reservation.reservation_id, 0, failed)
        self.settlements.attempt(pending, 1, Kind.RELEASE, reservation.reservation_id, 0, failed)

    # -- the cache

    def _find(self, lookup: _Lookup) -> _Hit | None:
        """The exact entry, else the best image of the same dish (when looked for)."""
        now = self.clock.now()
        with self.sessions.begin() as session:
            repo = CacheRepository(session)
            entry = repo.find_live(lookup.key, now)
            if entry is not None:
                return _Hit(entry.id, self._stored(repo, entry), False, 1.0, entry.cost_micros)
            if lookup.match_key is None:
                return None
            rows = repo.similar_candidates(lookup.match_key, lookup.quality_rank, now)
            by_id = {row.id: row for row in rows}
            choice = best_similar(
                (
                    Candidate(
                        row.id, row.quality_rank, RecipeContext.from_json(row.context), row.id
                    )
                    for row in rows
                ),
                lookup.context,
                lookup.quality_rank,
                lookup.threshold,
            )
            if choice is None:
                return None
            entry = by_id[choice.entry_id]
            saved = cost_saved(
                entry.quality, entry.cost_micros, lookup.quality, lookup.requested_micros
            )
            return _Hit(entry.id, self._stored(repo, entry), True, choice.similarity, saved)

    @staticmethod
    def _stored(repo: CacheRepository, entry: CacheEntry) -> StoredImage:
        row = repo.image(entry.image_id)
        assert row is not None  # the foreign key guarantees it
        return StoredImage.of(row)

    def _serve_hit(self, hit: _Hit, usage: Usage, context: RecipeContext) -> GenerateResult:
        outcome = Outcome.CACHE_HIT_SIMILAR if hit.similar else Outcome.CACHE_HIT_EXACT
        duplicate = self.budget.record_usage(
            replace(
                usage,
                outcome=outcome,
                success=True,
                cached=True,
                cache_hit="similar" if hit.similar else "exact",
                cost_saved_micros=hit.saved_micros,
            )
        )
        # A retry of an attempt already recorded is not a new use of the entry.
        if not duplicate:
            with self.sessions.begin() as session:
                CacheRepository(session).record_hit(
                    hit.entry_id,
                    self.clock.now(),
                    similar=hit.similar,
                    saved_micros=hit.saved_micros,
                )
        return self._cached_result(hit, usage, context, saved=hit.saved_micros)

    def _replayed(self, reservation: Reservation, lookup: _Lookup, usage: Usage) -> GenerateResult:
        state = reservation.state
        if state is ReservationState.HELD:
            raise FailedPrecondition(
                "an attempt with this request_id is still in progress; retry it later",
                "REQUEST_IN_PROGRESS",
                {"request_id": usage.request_id},
            )
        if state is ReservationState.COMMITTED:
            hit = self._find(replace(lookup, match_key=None))
            if hit is not None:  # already paid for by the first attempt
                return self._cached_result(hit, usage, lookup.context, saved=0)
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
    def _cached_result(
        hit: _Hit, usage: Usage, context: RecipeContext, *, saved: int
    ) -> GenerateResult:
        return GenerateResult(
            image=hit.image,
            source=Source.CACHE_SIMILAR if hit.similar else Source.CACHE_EXACT,
            cost_micros=0,
            cost_saved_micros=saved,
            similarity=hit.similarity,
            prompt=usage.prompt,
            request_id=usage.request_id,
            model=usage.model,
            size=usage.size,
            quality=usage.quality,
            context=context,
        )

    def _keep(
        self,
        generated: GeneratedImage,
        request: ValidRequest,
        lookup: _Lookup,
        reservation: Reservation,
        cost: int,
        spent: Usage,
    ) -> tuple[StoredImage, int]:
        """Store the bytes, then the image row, the cache entry and the pending
        commit of its cost (one transaction); the image and the commit's outbox row.

        Bytes first, so a row never names a file that is not there. When another
        request stored an entry for the same key first (its lease expired while
        it generated), this one keeps its own image (it was paid for and is
        readable) and leaves the winner's entry.
        """
        image_id = self.store.put(generated.data, generated.content_type)
        now = self.clock.now()
        with self.sessions.begin() as session:
            repo = CacheRepository(session)
            repo.add_image(image_id, generated.content_type, len(generated.data), now)
            _entry, won = repo.add_entry(
                {
                    "cache_key": lookup.key,
                    "model": request.model,
                    "size": request.size,
                    "quality": request.quality,
                    "quality_rank": lookup.quality_rank,
                    "prompt": spent.prompt,
                    "context": lookup.context.to_json(),
                    # Only a built prompt shows the dish its context says; a
                    # caller's prompt may show anything, so it is never reused.
                    "match_key": (
                        match_key(request.model, request.size, lookup.context)
                        if not request.prompt
                        else None
                    ),
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
                log.info("cache entry raced; kept the first", extra={"cache_key": lookup.key})
            pending = self.settlements.record(
                session, Kind.COMMIT, reservation.reservation_id, cost, spent
            )
            return StoredImage.of(row), pending

    # -- single flight

    def _claim(self, key: str, owner: str) -> bool:
        with self.sessions.begin() as session:
            return LeaseRepository(session).claim(key, owner, self.clock.now(), self.lease_ttl)

    def _release_lease(self, key: str, owner: str) -> None:
        try:
            with self.sessions.begin() as session:
                LeaseRepository(session).release(key, owner)
        except Exception:
            # It expires on its own; waiters meanwhile wait out their bound.
            log.exception("releasing a generation lease failed", extra={"cache_key": key})

    def _wait_for_winner(self, lookup: _Lookup, owner: str) -> tuple[_Hit | None, bool]:
        """Another request holds the lease: poll for its entry until the bound.
        (hit, False) when it appeared; (None, True) when the lease came free and
        is now ours; (None, False) when the wait ran out."""
        exact = replace(lookup, match_key=None)
        deadline = time.monotonic() + self.single_flight_wait_seconds
        delay = FIRST_POLL_SECONDS
        while True:
            hit = self._find(exact)
            if hit is not None:
                return hit, False
            with self.sessions.begin() as session:
                leases = LeaseRepository(session)
                now = self.clock.now()
                if not leases.held_by_another(lookup.key, owner, now) and leases.claim(
                    lookup.key, owner, now, self.lease_ttl
                ):
                    return None, True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "waited out an identical generation; generating again",
                    extra={"cache_key": lookup.key, "waited_s": self.single_flight_wait_seconds},
                )
                return None, False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, LONGEST_POLL_SECONDS)

    # -- GetImage

    def image(self, image_id: str) -> tuple[StoredImage, bytes]:
        _check_image_id(image_id)
        with self.sessions.begin() as session:
            row = CacheRepository(session).image(image_id)
            if row is None:
                raise NotFound(f"no image {image_id}")
            stored = StoredImage.of(row)
        return stored, self.store.get(stored.image_id, stored.content_type)

    # -- GetCacheStats and the admin

    def cache_stats(self, page_size: int = 0, page_token: str = "") -> CacheStatsPage:
        violations = Violations()
        size = paging.page_size(
            violations, page_size, default=STATS_PAGE_SIZE, maximum=MAX_STATS_PAGE_SIZE
        )
        position = paging.decode(violations, page_token, {})
        after = None
        if position is not None:
            try:
                after = (int(position["u"]), int(position["i"]))
            except (KeyError, TypeError, ValueError):
                violations.add("page_token", "not a page token this service issued")
        violations.raise_if_any()
        now = self.clock.now()
        with self.sessions.begin() as session:
            repo = CacheRepository(session)
            stats = repo.stats(now)
            rows = repo.most_used(now, size + 1, after)
            page, more = rows[:size], len(rows) > size
            listed = [self._listed(repo, row) for row in page]
        token = paging.encode({"u": page[-1].uses, "i": page[-1].id}, {}) if more and page else ""
        return CacheStatsPage(stats, listed, token)

    def _listed(self, repo: CacheRepository, row: CacheEntry) -> CachedEntry:
        return CachedEntry(
            entry_id=row.id,
            image=self._stored(repo, row),
            model=row.model,
            size=row.size,
            quality=row.quality,
            dish=str((row.context or {}).get("dish", "")),
            uses=row.uses,
            exact_hits=row.exact_hits,
            similar_hits=row.similar_hits,
            cost_micros=row.cost_micros,
            cost_saved_micros=row.cost_saved_micros,
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_hit_at=row.last_hit_at,
        )

    def purge_expired(self) -> int:
        """Delete every expired or invalidated entry, a batch a transaction."""
        purged = 0
        while True:
            with self.sessions.begin() as session:
                count = CacheRepository(session).purge_expired(self.clock.now())
            purged += count
            if count == 0:
                return purged

    def invalidate_image(self, image_id: str) -> int:
        _check_image_id(image_id)
        with self.sessions.begin() as session:
            count = CacheRepository(session).invalidate_image(image_id, self.clock.now())
        if count == 0:
            raise NotFound(f"no live cache entry holds image {image_id}")
        log.info("cached image invalidated", extra={"image_id": image_id, "entries": count})
        return count


def _check_image_id(image_id: str) -> None:
    if not SHA256_HEX.match(image_id):
        raise InvalidArgument.field("image_id", "expected 64 lowercase hexadecimal characters")


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _short(message: str) -> str:
    return message[:MAX_ERROR_MESSAGE_CHARS]


def _reason_and_message(error: Exception) -> tuple[str, str]:
    if isinstance(error, DomainError):
        reason = getattr(getattr(error, "info", None), "reason", "") or "PROVIDER_ERROR"
        return reason, _short(error.message)
    return "PROVIDER_ERROR", "the image provider failed; a placeholder is shown instead"


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
