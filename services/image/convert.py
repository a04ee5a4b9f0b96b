"""ImageService's protos <-> plain values, both ways, and nothing else."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from recipeimage.common.v1 import image_quality_pb2
from recipeimage.image.v1 import degradation_pb2 as dpb
from recipeimage.image.v1 import image_service_pb2 as pb
from recipeimage.image.v1 import quote_pb2 as qpb

from services.common import protoenum, quality, timestamps
from services.image.domain.command import GenerateCommand
from services.image.domain.degradation import DegradationPolicy, Degraded
from services.image.domain.images import StoredImage
from services.image.domain.quote import Quote, QuotedWindow, Refusal
from services.image.domain.results import CachedEntry, CacheStatsPage, GenerateResult, Source
from services.image.recipes.analyzer import Recipe, RecipeContext

_SOURCES = protoenum.to_proto(Source, pb.ImageSource, "IMAGE_SOURCE_")


def generate_command(request: pb.GenerateImageRequest, user_id: str) -> GenerateCommand:
    """The request for user_id (whom the caller acts for, resolved at the edge)."""
    recipe = request.recipe
    return GenerateCommand(
        user_id=user_id,
        recipe=Recipe(
            title=recipe.title,
            ingredients=tuple(recipe.ingredients),
            instructions=tuple(recipe.instructions),
            categories=tuple(recipe.categories),
            cuisine=recipe.cuisine,
            recipe_id=recipe.recipe_id,
        ),
        model=request.model,
        size=request.size,
        quality=quality.from_proto(request.quality),
        prompt=request.prompt,
        request_id=request.request_id,
        allow_similar=request.allow_similar,
        min_similarity=request.min_similarity,
        degradation=_degradation_policy(request.degradation),
    )


def _degradation_policy(policy: dpb.DegradationPolicy) -> DegradationPolicy:
    return DegradationPolicy(
        lower_quality=policy.lower_quality,
        qualities=tuple(quality.from_proto(value) for value in policy.qualities),
        smaller_size=policy.smaller_size,
        sizes=tuple(size.strip().lower() for size in policy.sizes),
        cached_only=policy.cached_only,
    )


def generate_response(result: GenerateResult) -> pb.GenerateImageResponse:
    return pb.GenerateImageResponse(
        image=image(result.image),
        source=pb.ImageSource.ValueType(_SOURCES[result.source]),
        cost_micros=result.cost_micros,
        cost_saved_micros=result.cost_saved_micros,
        similarity=result.similarity,
        fallback_used=result.source is Source.FALLBACK,
        prompt=result.prompt,
        request_id=result.request_id,
        model=result.model,
        size=result.size,
        quality=_quality(result.quality),
        generation_time_ms=result.generation_time_ms,
        context=_context(result.context),
        fallback_reason=result.fallback_reason,
        fallback_message=result.fallback_message,
        degradation=_degradation(result.degraded),
    )


def _degradation(value: Degraded | None) -> dpb.Degradation | None:
    if value is None:
        return None
    return dpb.Degradation(
        requested_quality=_quality(value.requested.quality),
        requested_size=value.requested.size,
        served_quality=_quality(value.served.quality),
        served_size=value.served.size,
        reason=value.reason,
        message=value.message,
    )


def quote_response(quote: Quote) -> pb.QuoteImageResponse:
    hit = quote.hit
    return pb.QuoteImageResponse(
        source=_quote_source(quote),
        cost_micros=quote.cost_micros,
        cost_saved_micros=hit.saved_micros if hit is not None else 0,
        max_cost_micros=quote.max_cost_micros,
        expected_cost_micros=quote.expected_cost_micros,
        similarity=hit.similarity if hit is not None else 0.0,
        image=image(hit.image) if hit is not None else None,
        model=quote.model,
        size=quote.served.size,
        quality=_quality(quote.served.quality),
        prompt=quote.prompt,
        context=_context(quote.context),
        degradation=_degradation(quote.degraded),
        per_generation_limit_micros=quote.per_generation_micros,
        windows=[_quote_window(window) for window in quote.windows],
        refusal=_quote_refusal(quote.refusal),
    )


def _quote_source(quote: Quote) -> pb.ImageSource.ValueType:
    if quote.refusal is not None:
        return pb.IMAGE_SOURCE_UNSPECIFIED
    if quote.hit is None:
        return pb.IMAGE_SOURCE_GENERATED
    return pb.IMAGE_SOURCE_CACHE_SIMILAR if quote.hit.similar else pb.IMAGE_SOURCE_CACHE_EXACT


def _quote_window(quoted: QuotedWindow) -> qpb.QuoteWindow:
    window = quoted.window
    return qpb.QuoteWindow(
        window=window.window,
        limit_micros=window.limit_micros,
        spent_micros=window.spent_micros,
        reserved_micros=window.reserved_micros,
        remaining_micros=window.remaining_micros,
        remaining_after_micros=quoted.remaining_after_micros,
        reset_time=timestamps.to_proto(window.reset_at),
        limit_source=window.limit_source,
    )


def _quote_refusal(refusal: Refusal | None) -> qpb.QuoteRefusal | None:
    if refusal is None:
        return None
    message = qpb.QuoteRefusal(
        code=refusal.code,
        reason=refusal.reason,
        message=refusal.message,
        metadata=refusal.metadata,
    )
    if refusal.retry_after is not None:
        message.retry_delay.FromTimedelta(refusal.retry_after)
    return message


def image(stored: StoredImage) -> pb.Image:
    return pb.Image(
        image_id=stored.image_id,
        content_type=stored.content_type,
        size_bytes=stored.size_bytes,
        create_time=timestamps.to_proto(stored.created_at),
    )


def stream_image_responses(
    stored: StoredImage, chunks: Iterable[tuple[int, bytes]]
) -> Iterator[pb.StreamImageResponse]:
    """StreamImage's messages: the first carries the metadata, each a chunk."""
    metadata: pb.Image | None = image(stored)
    for offset, data in chunks:
        yield pb.StreamImageResponse(image=metadata, data=data, offset=offset)
        metadata = None


def cache_stats_response(page: CacheStatsPage) -> pb.GetCacheStatsResponse:
    stats = page.stats
    return pb.GetCacheStatsResponse(
        entries=stats.entries,
        exact_hits=stats.exact_hits,
        similar_hits=stats.similar_hits,
        misses=stats.misses,
        hit_rate=stats.hit_rate,
        total_cost_saved_micros=stats.total_cost_saved_micros,
        exact_hit_rate=stats.exact_hit_rate,
        similar_hit_rate=stats.similar_hit_rate,
        most_used_entries=[_cache_entry(entry) for entry in page.most_used],
        next_page_token=page.next_page_token,
    )


def _quality(name: str) -> image_quality_pb2.ImageQuality.ValueType:
    return image_quality_pb2.ImageQuality.ValueType(quality.to_proto(name))


def _context(context: RecipeContext | None) -> pb.RecipeContext | None:
    if context is None:
        return None
    return pb.RecipeContext(
        dish=context.dish,
        dish_identity=context.dish_identity,
        cuisine=context.cuisine,
        course=context.course,
        main_ingredients=list(context.main_ingredients),
        cooking_method=context.cooking_method,
        complexity=context.complexity,
        dietary_tags=list(context.dietary_tags),
        signature_foods=list(context.signature_foods),
    )


def _cache_entry(entry: CachedEntry) -> pb.CacheEntry:
    message = pb.CacheEntry(
        entry_id=str(entry.entry_id),
        image=image(entry.image),
        model=entry.model,
        size=entry.size,
        quality=_quality(entry.quality),
        dish=entry.dish,
        uses=entry.uses,
        exact_hits=entry.exact_hits,
        similar_hits=entry.similar_hits,
        cost_micros=entry.cost_micros,
        cost_saved_micros=entry.cost_saved_micros,
        create_time=timestamps.to_proto(entry.created_at),
        expire_time=timestamps.to_proto(entry.expires_at),
    )
    if entry.last_hit_at is not None:
        message.last_hit_time.CopyFrom(timestamps.to_proto(entry.last_hit_at))
    return message
