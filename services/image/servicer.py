"""ImageService's gRPC edge: proto in, a plain call, proto out.

Authentication, roles and the mapping of domain errors to status codes are
@rpc's (services/common/rpc.py). A generation runs to its end even when the
caller goes away: it is paid for either way, and it lands in the cache.
"""

from __future__ import annotations

from datetime import datetime

import grpc
from google.protobuf import timestamp_pb2
from recipeimage.image.v1 import image_service_pb2 as pb
from recipeimage.image.v1 import image_service_pb2_grpc as pb_grpc

from services.common import quality
from services.common.auth import ADMIN_ONLY, ANY_ROLE, TRUSTED, Principal
from services.common.rpc import Guard, rpc
from services.image.analyzer import Recipe, RecipeContext
from services.image.generation import CachedEntry, GenerateResult, Images, Source, StoredImage
from services.image.validation import GenerateCommand

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ImageService"].full_name

_SOURCES = {
    Source.GENERATED: pb.IMAGE_SOURCE_GENERATED,
    Source.CACHE_EXACT: pb.IMAGE_SOURCE_CACHE_EXACT,
    Source.CACHE_SIMILAR: pb.IMAGE_SOURCE_CACHE_SIMILAR,
    Source.FALLBACK: pb.IMAGE_SOURCE_FALLBACK,
}


class ImageServicer(pb_grpc.ImageServiceServicer):
    def __init__(self, images: Images, guard: Guard) -> None:
        self.images = images
        self.guard = guard

    @rpc(ANY_ROLE)
    def GenerateImage(
        self, request: pb.GenerateImageRequest, context: grpc.ServicerContext, principal: Principal
    ) -> pb.GenerateImageResponse:
        user_id = principal.acting_for(request.user_id)
        recipe = request.recipe
        result = self.images.generate(
            GenerateCommand(
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
            )
        )
        return _generate_response(result)

    @rpc(ANY_ROLE)
    def GetImage(
        self, request: pb.GetImageRequest, context: grpc.ServicerContext, principal: Principal
    ) -> pb.GetImageResponse:
        image, data = self.images.image(request.image_id)
        return pb.GetImageResponse(image=_image(image), data=data)

    @rpc(TRUSTED)
    def GetCacheStats(
        self, request: pb.GetCacheStatsRequest, context: grpc.ServicerContext, principal: Principal
    ) -> pb.GetCacheStatsResponse:
        page = self.images.cache_stats(request.page_size, request.page_token)
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

    @rpc(ADMIN_ONLY)
    def PurgeExpiredCache(
        self,
        request: pb.PurgeExpiredCacheRequest,
        context: grpc.ServicerContext,
        principal: Principal,
    ) -> pb.PurgeExpiredCacheResponse:
        return pb.PurgeExpiredCacheResponse(purged_entries=self.images.purge_expired())

    @rpc(ADMIN_ONLY)
    def InvalidateCachedImage(
        self,
        request: pb.InvalidateCachedImageRequest,
        context: grpc.ServicerContext,
        principal: Principal,
    ) -> pb.InvalidateCachedImageResponse:
        count = self.images.invalidate_image(request.image_id)
        return pb.InvalidateCachedImageResponse(invalidated_entries=count)


def _timestamp(instant: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(instant)
    return stamp


def _image(image: StoredImage) -> pb.Image:
    return pb.Image(
        image_id=image.image_id,
        content_type=image.content_type,
        size_bytes=image.size_bytes,
        create_time=_timestamp(image.created_at),
    )


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


def _generate_response(result: GenerateResult) -> pb.GenerateImageResponse:
    return pb.GenerateImageResponse(
        image=_image(result.image),
        source=_SOURCES[result.source],
        cost_micros=result.cost_micros,
        cost_saved_micros=result.cost_saved_micros,
        similarity=result.similarity,
        fallback_used=result.source is Source.FALLBACK,
        prompt=result.prompt,
        request_id=result.request_id,
        model=result.model,
        size=result.size,
        quality=quality.to_proto(result.quality),
        generation_time_ms=result.generation_time_ms,
        context=_context(result.context),
        fallback_reason=result.fallback_reason,
        fallback_message=result.fallback_message,
    )


def _cache_entry(entry: CachedEntry) -> pb.CacheEntry:
    message = pb.CacheEntry(
        entry_id=str(entry.entry_id),
        image=_image(entry.image),
        model=entry.model,
        size=entry.size,
        quality=quality.to_proto(entry.quality),
        dish=entry.dish,
        uses=entry.uses,
        exact_hits=entry.exact_hits,
        similar_hits=entry.similar_hits,
        cost_micros=entry.cost_micros,
        cost_saved_micros=entry.cost_saved_micros,
        create_time=_timestamp(entry.created_at),
        expire_time=_timestamp(entry.expires_at),
    )
    if entry.last_hit_at is not None:
        message.last_hit_time.CopyFrom(_timestamp(entry.last_hit_at))
    return message
