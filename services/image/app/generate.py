"""GenerateImage, top to bottom. Plain Python: no gRPC, no SQL here.

1. Validate (nothing charged on bad input); ask BudgetService to admit the
   call (a blocked user, a request rate); analyze the recipe and build the
   prompt (unless the caller gave one).
2. Cache: a live exact entry; then, when the caller allows it and the prompt
   was built, an image of the same dish. A hit is recorded at BudgetService
   at cost zero with what it saved.
3. Single flight: wait for this request's turn to generate; an identical
   generation finished meanwhile is served as an exact hit.
4. Reserve the most the image can cost, generate, store the bytes, the cache
   entry and the pending commit in one transaction, then commit the actual
   cost from the usage the provider reports (through the settlement outbox).
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

import logging
import time
import uuid
from dataclasses import replace

from services.common.clock import Clock
from services.common.errors import DomainError, FailedPrecondition, QuotaExceeded
from services.common.prices import PriceTable
from services.image.app.cache_lookup import CacheLookup
from services.image.app.dish_recognition import DishRecognition
from services.image.app.generation_slots import GenerationSlots
from services.image.app.image_keeper import ImageKeeper, PaidImage
from services.image.app.in_flight import InFlight
from services.image.app.meters import GenerationMeters
from services.image.app.plans import Plan, lookup_for, plan_steps
from services.image.app.ports import Budget, Provider
from services.image.app.recipe_memo import RecipeMemo
from services.image.app.settler import Settler
from services.image.app.single_flight import SingleFlight
from services.image.domain.accounting import (
    AttemptState,
    Outcome,
    Reservation,
    ReservationState,
    Usage,
)
from services.image.domain.cache_policy import Hit, Lookup
from services.image.domain.command import Defaults, GenerateCommand, ValidRequest, validate
from services.image.domain.degradation import MONEY_REASONS, Action, choose, degraded
from services.image.domain.end_users import end_user_id
from services.image.domain.failures import (
    blamed_on_input,
    failure_message,
    fallback_reason_and_message,
    short,
)
from services.image.domain.images import StoredImage, store_unavailable
from services.image.domain.results import GenerateResult, Source
from services.image.domain.settlement import Settlement
from services.image.recipes.prompts import build_prompt
from services.image.recipes.similarity import effective_threshold, match_key

log = logging.getLogger("recipeimage.image.generation")

# BudgetService's reason for a record whose request id holds a reservation.
ATTEMPT_HAS_RESERVATION = "ATTEMPT_HAS_RESERVATION"
STORE_FAILED = (
    "the image was generated (and its cost recorded) but the image store failed to keep it; "
    "retry with a new request_id"
)


class GenerateImage:
    def __init__(
        self,
        *,
        prices: PriceTable,
        defaults: Defaults,
        clock: Clock,
        budget: Budget,
        provider: Provider,
        cache: CacheLookup,
        single_flight: SingleFlight,
        keeper: ImageKeeper,
        settler: Settler,
        similarity_threshold: float,
        fallback: StoredImage | None,
        in_flight: InFlight,
        end_user_salt: bytes,
        slots: GenerationSlots,
        meters: GenerationMeters | None = None,
        dish_recognition: DishRecognition | None = None,
        recipes: RecipeMemo | None = None,
    ) -> None:
        self.prices = prices
        self.defaults = defaults
        self.clock = clock
        self.budget = budget
        self.provider = provider
        self.cache = cache
        self.single_flight = single_flight
        self.keeper = keeper
        self.settler = settler
        self.similarity_threshold = similarity_threshold
        self.fallback = fallback
        self.in_flight = in_flight
        self.slots = slots
        self.end_user_salt = end_user_salt
        self.meters = meters or GenerationMeters()
        self.dish_recognition = dish_recognition
        self.recipes = recipes or RecipeMemo()

    def __call__(self, command: GenerateCommand) -> GenerateResult:
        request = validate(command, self.prices, self.defaults, self.clock.now().date())
        # Admission (block, request rates) before any work: a refused call costs
        # nothing. It also says whether the caller's request_id was seen before,
        # which a cache hit needs to answer a retry without waiting on its record.
        attempt = self.budget.admit(command.user_id, request.request_id)
        plan = replace(self.plan(command, request, recognize=True), attempt=attempt)
        hit = self._look_up(plan.lookup)
        if hit is not None:
            return self._serve_hit(hit, plan)
        if request.degradation.asked:
            return self._serve_degraded(plan)
        return self._generate(plan)

    def _generate(self, plan: Plan, *, degrading: bool = False) -> GenerateResult:
        # A slot (app/generation_slots.py) only past the cache: hits never wait for one.
        with (
            self.slots.held(),
            self.single_flight.turn_to_generate(plan.lookup) as winners_hit,
        ):
            if winners_hit is not None:
                return self._serve_hit(winners_hit, plan)
            with self.in_flight.track():
                return self._reserve_and_generate(plan, degrading)

    def _serve_degraded(self, plan: Plan) -> GenerateResult:
        """The first degradation step that can be served (domain.degradation.
        choose, as QuoteImage chooses): a cached image, or a generation whose
        reservation fits. A reservation refused for money moves on to the next
        step; when none is left, the request is refused as without a policy."""
        steps = plan_steps(plan, self.cache, first_hit=None)
        options = [step.option for step in steps]
        start, reason = 0, ""
        while True:
            budget = self.budget.check(
                plan.usage.user_id, plan.max_cost_micros, include_admission=False
            )
            reason = reason or budget.money_reason
            choice = choose(options, budget.room, start)
            if choice.action is Action.REFUSE:
                return self._generate(plan)
            step = steps[choice.index]
            cached = choice.action is Action.SERVE_CACHED
            try:
                if step.hit is not None and cached:
                    result = self._serve_hit(step.hit, step.plan)
                else:
                    result = self._generate(step.plan, degrading=True)
            except QuotaExceeded as refusal:
                if refusal.info.reason not in MONEY_REASONS:
                    raise
                reason, start = reason or refusal.info.reason, choice.index + 1
                continue
            if not choice.degraded:
                return result
            served = step.option.step.setting
            return replace(
                result,
                degraded=degraded(
                    plan.request.setting, served, reason, cached=result.source.cached
                ),
            )

    def _look_up(self, lookup: Lookup) -> Hit | None:
        started = time.perf_counter()
        hit = self.cache.find(lookup)
        self.meters.cache_lookup_seconds(time.perf_counter() - started)
        if hit is None:
            self.meters.cache_miss(1)
        else:
            self.meters.cache_hit("similar" if hit.similar else "exact")
        return hit

    def plan(
        self, command: GenerateCommand, request: ValidRequest, *, recognize: bool = False
    ) -> Plan:
        """The attempt's prompt (the caller's, or built from the recipe), its
        usage record so far and its cache lookup. With recognize (GenerateImage,
        not a quote) a built prompt's dish the rules could not name may be named
        by the dish model (app/dish_recognition.py), when one is configured."""
        max_chars = request.price.max_prompt_chars
        context, built = self.recipes.understand(command.recipe, max_chars)
        if recognize and not request.prompt and self.dish_recognition is not None:
            refined = self.dish_recognition.refine(command.recipe, context, command.user_id)
            if refined != context:
                context, built = refined, build_prompt(refined, max_chars)
        prompt = request.prompt or built
        # A caller's prompt may show anything: it has no dish.
        dish = "" if request.prompt else match_key(request.model, request.size, context) or ""
        usage = Usage(
            request_id=request.request_id or uuid.uuid4().hex,
            user_id=command.user_id,
            recipe_id=command.recipe.recipe_id,
            prompt=prompt,
            size=request.size,
            quality=request.quality,
            model=request.model,
            provider=self.provider.name,
            dish_key=dish,
            similar_allowed=request.allow_similar,
            custom_prompt=bool(request.prompt),
        )
        lookup = lookup_for(
            request,
            prompt,
            context,
            similar=request.allow_similar and not request.prompt,
            threshold=effective_threshold(self.similarity_threshold, request.min_similarity),
        )
        return Plan(request, usage, lookup)

    def _serve_hit(self, hit: Hit, plan: Plan) -> GenerateResult:
        """Record the hit (cost 0, what it saved) through the outbox, then
        count it on its entry, unless it retried an attempt BudgetService had
        already recorded at admission: a retry of an attempt that generated is
        a replay of that attempt, and one whose first attempt still holds money
        is in progress."""
        served = replace(
            plan.usage,
            outcome=Outcome.CACHE_HIT_SIMILAR if hit.similar else Outcome.CACHE_HIT_EXACT,
            success=True,
            cached=True,
            cache_hit="similar" if hit.similar else "exact",
            cost_saved_micros=hit.saved_micros,
            image_id=hit.image.image_id,
        )
        if plan.attempt is AttemptState.RESERVED:
            raise _in_progress(plan.usage.request_id)
        try:
            duplicate = plan.attempt is AttemptState.RECORDED or bool(
                self.settler.record_hit(served)
            )
        except FailedPrecondition as error:
            if error.info.reason == ATTEMPT_HAS_RESERVATION:
                # The request id's first attempt still holds money (its caller
                # may have crashed): the documented answer for an attempt in flight.
                raise _in_progress(plan.usage.request_id) from None
            raise
        if not duplicate:
            self.cache.count_hit(hit)
            return _cached_result(hit, plan, saved=hit.saved_micros)
        paid = self.keeper.image_paid_by(plan.usage.user_id, plan.usage.request_id)
        if paid is not None:
            return self._replay_paid_image(paid, plan)
        return _cached_result(hit, plan, saved=hit.saved_micros)

    def _reserve_and_generate(self, plan: Plan, degrading: bool) -> GenerateResult:
        reservation = self._reserve_or_record_refusal(plan, degrading)
        if reservation.replayed:
            return self._answer_replay(reservation, plan)
        return self._generate_paid(reservation, plan)

    def _reserve_or_record_refusal(self, plan: Plan, degrading: bool) -> Reservation:
        """Hold the most the image can cost; a refusal is recorded and raised
        (while degrading, a refusal for money is raised unrecorded: the next
        step, or the request's own refusal, records the attempt)."""
        usage = plan.usage
        try:
            return self.budget.reserve(usage.user_id, plan.max_cost_micros, usage.request_id)
        except QuotaExceeded as refusal:
            if degrading and refusal.info.reason in MONEY_REASONS:
                raise
            self.budget.record_usage(
                replace(usage, outcome=Outcome.REFUSED, error_message=short(refusal.message))
            )
            raise

    def _generate_paid(self, reservation: Reservation, plan: Plan) -> GenerateResult:
        """With the money held: generate, keep the image, commit what it cost."""
        request, usage = plan.request, plan.usage
        started = time.monotonic()
        try:
            generated = self.provider.generate(
                usage.prompt,
                request.model,
                request.size,
                request.quality,
                end_user=end_user_id(self.end_user_salt, usage.user_id),
            )
        except Exception as exc:
            return self._release_after_failure(reservation, plan, exc, _elapsed_ms(started))
        elapsed_ms = _elapsed_ms(started)
        cost = request.price.actual_cost_micros(request.quality, request.size, generated.usage)
        spent = replace(
            usage,
            outcome=Outcome.GENERATED,
            provider=generated.provider,
            cost_micros=cost,
            success=True,
            generation_time_ms=elapsed_ms,
            input_tokens=generated.input_tokens,
            output_tokens=generated.output_tokens,
        )
        commit = Settlement.commit(reservation.reservation_id, cost, spent)
        try:
            image, commit = self.keeper.store_generated_image(
                generated, plan.lookup, plan.built_prompt, commit
            )
        except Exception as error:
            # The provider was paid: the spend is committed even though the image is lost.
            log.exception(
                "storing a generated image failed", extra={"request_id": usage.request_id}
            )
            lost = replace(spent, success=False, error_message="storing the image failed")
            self.settler.commit_now(self.settler.queue_alone(replace(commit, usage=lost)))
            if isinstance(error, OSError):
                raise store_unavailable(STORE_FAILED) from error
            raise
        self.settler.commit_now(commit)
        return GenerateResult.answering(
            usage,
            plan.lookup.context,
            image,
            Source.GENERATED,
            cost_micros=cost,
            generation_time_ms=elapsed_ms,
        )

    def _release_after_failure(
        self, reservation: Reservation, plan: Plan, error: Exception, elapsed_ms: int
    ) -> GenerateResult:
        """The provider failed: give the money back and record the attempt; serve
        the fallback image when there is one, else pass the error on."""
        if not isinstance(error, DomainError):
            log.exception("the image provider failed unexpectedly", exc_info=error)
        error = blamed_on_input(error, caller_prompt=not plan.built_prompt)
        failed = replace(
            plan.usage,
            outcome=Outcome.FAILED,
            error_message=failure_message(error),
            generation_time_ms=elapsed_ms,
        )
        if self.fallback is None:
            self.settler.release_now(Settlement.release(reservation.reservation_id, failed))
            raise error
        served = replace(failed, outcome=Outcome.FALLBACK, fallback_used=True)
        self.settler.release_now(Settlement.release(reservation.reservation_id, served))
        reason, message = fallback_reason_and_message(error)
        return GenerateResult.answering(
            plan.usage,
            plan.lookup.context,
            self.fallback,
            Source.FALLBACK,
            generation_time_ms=elapsed_ms,
            fallback_reason=reason,
            fallback_message=message,
        )

    def _answer_replay(self, reservation: Reservation, plan: Plan) -> GenerateResult:
        """The request id was reserved before: never generate or record it again."""
        request_id = plan.usage.request_id
        state = reservation.state
        if state is ReservationState.HELD:
            raise _in_progress(request_id)
        if state is ReservationState.COMMITTED:
            paid = self.keeper.image_paid_by(plan.usage.user_id, request_id)
            return self._replay_paid_image(paid, plan)
        raise FailedPrecondition(
            "an attempt with this request_id already failed; retry with a new request_id",
            "REQUEST_ALREADY_FAILED",
            {"request_id": request_id, "state": state.value},
        )

    def _replay_paid_image(self, paid: PaidImage | None, plan: Plan) -> GenerateResult:
        """A retry of an attempt that generated and was paid for: served that
        attempt's own image (cost 0, unrecorded) when it asks for the same image
        and the entry still serves, else refused. Any other cached image under
        the old request id would be an attempt with no usage record."""
        if paid is not None and paid.hit is not None and paid.cache_key == plan.lookup.key:
            return _cached_result(paid.hit, plan, saved=0)
        raise FailedPrecondition(
            "an attempt with this request_id already completed; use a new request_id "
            "to generate again",
            "REQUEST_ALREADY_COMPLETED",
            {"request_id": plan.usage.request_id},
        )


def _in_progress(request_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        "an attempt with this request_id is still in progress; retry it later",
        "REQUEST_IN_PROGRESS",
        {"request_id": request_id},
    )


def _cached_result(hit: Hit, plan: Plan, *, saved: int) -> GenerateResult:
    return GenerateResult.answering(
        plan.usage,
        plan.lookup.context,
        hit.image,
        Source.CACHE_SIMILAR if hit.similar else Source.CACHE_EXACT,
        cost_saved_micros=saved,
        similarity=hit.similarity,
    )


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
