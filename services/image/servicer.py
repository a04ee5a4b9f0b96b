"""ImageService's gRPC edge: proto in, a plain call, proto out.

Authentication, roles and the mapping of domain errors to status codes are
@rpc's (services/common/rpc.py). A generation runs to its end even when the
caller goes away: it is paid for either way, and it lands in the cache.
"""

from __future__ import annotations

import grpc
from google.protobuf import timestamp_pb2
from recipeimage.image.v1 import image_service_pb2 as pb
from recipeimage.image.v1 import image_service_pb2_grpc as pb_grpc

from services.common.auth import ANY_ROLE, TRUSTED, Principal
from services.common.rpc import Guard, rpc
from services.image import quality
from services.image.analyzer import Recipe
from services.image.generation import GenerateResult, Images, Source, StoredImage
from services.image.validation import GenerateCommand

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ImageService"].full_name

_SOURCES = {
    Source.GENERATED: pb.IMAGE_SOURCE_GENERATED,
    Source.CACHE_EXACT: pb.IMAGE_SOURCE_CACHE_EXACT,
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
        stats = self.images.cache_stats()
        return pb.GetCacheStatsResponse(
            entries=stats.entries,
            exact_hits=stats.exact_hits,
            similar_hits=stats.similar_hits,
            misses=stats.misses,
            hit_rate=stats.hit_rate,
            total_cost_saved_micros=stats.total_cost_saved_micros,
        )


def _timestamp(image: StoredImage) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(image.created_at)
    return stamp


def _image(image: StoredImage) -> pb.Image:
    return pb.Image(
        image_id=image.image_id,
        content_type=image.content_type,
        size_bytes=image.size_bytes,
        create_time=_timestamp(image),
    )


def _generate_response(result: GenerateResult) -> pb.GenerateImageResponse:
    return pb.GenerateImageResponse(
        image=_image(result.image),
        source=_SOURCES[result.source],
        cost_micros=result.cost_micros,
        cost_saved_micros=result.cost_saved_micros,
        similarity=result.similarity,
        fallback_used=False,
        prompt=result.prompt,
        request_id=result.request_id,
        model=result.model,
        size=result.size,
        quality=quality.to_proto(result.quality),
        generation_time_ms=result.generation_time_ms,
    )
