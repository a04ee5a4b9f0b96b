"""ImageService's gRPC edge: proto in, a plain call, proto out.

Authentication, roles and the mapping of domain errors to status codes are
@rpc's (services/common/rpc.py); who a call acts for is resolved here
(principal.acting_for) and passed down as a plain user id. A generation runs
to its end even when the caller goes away: it is paid for either way, and it
lands in the cache.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from recipeimage.image.v1 import image_service_pb2 as pb
from recipeimage.image.v1 import image_service_pb2_grpc as pb_grpc

from services.common.auth import ADMIN_ONLY, ANY_ROLE, TRUSTED, Principal
from services.common.rpc import Guard, rpc
from services.image import convert
from services.image.app.use_cases import ImageUseCases

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ImageService"].full_name


class ImageServicer(pb_grpc.ImageServiceServicer):
    def __init__(self, use_cases: ImageUseCases, guard: Guard) -> None:
        self.use_cases = use_cases
        self.guard = guard

    @rpc(ANY_ROLE)
    def GenerateImage(
        self, request: pb.GenerateImageRequest, context: grpc.ServicerContext, principal: Principal
    ) -> pb.GenerateImageResponse:
        user_id = principal.acting_for(request.user_id)
        result = self.use_cases.generate_image(convert.generate_command(request, user_id))
        return convert.generate_response(result)

    @rpc(ANY_ROLE)
    def QuoteImage(
        self, request: pb.QuoteImageRequest, context: grpc.ServicerContext, principal: Principal
    ) -> pb.QuoteImageResponse:
        user_id = principal.acting_for(request.request.user_id)
        quote = self.use_cases.quote_image(convert.generate_command(request.request, user_id))
        return convert.quote_response(quote)

    @rpc(ANY_ROLE)
    def GetImage(
        self, request: pb.GetImageRequest, context: grpc.ServicerContext, principal: Principal
    ) -> pb.GetImageResponse:
        image, data = self.use_cases.queries.get_image(request.image_id)
        return pb.GetImageResponse(image=convert.image(image), data=data)

    @rpc(ANY_ROLE)
    def StreamImage(
        self, request: pb.StreamImageRequest, context: grpc.ServicerContext, principal: Principal
    ) -> Iterator[pb.StreamImageResponse]:
        image, chunks = self.use_cases.queries.stream_image(request.image_id)
        return convert.stream_image_responses(image, chunks)

    @rpc(TRUSTED)
    def GetCacheStats(
        self, request: pb.GetCacheStatsRequest, context: grpc.ServicerContext, principal: Principal
    ) -> pb.GetCacheStatsResponse:
        page = self.use_cases.queries.cache_stats(request.page_size, request.page_token)
        return convert.cache_stats_response(page)

    @rpc(ADMIN_ONLY)
    def PurgeExpiredCache(
        self,
        request: pb.PurgeExpiredCacheRequest,
        context: grpc.ServicerContext,
        principal: Principal,
    ) -> pb.PurgeExpiredCacheResponse:
        return pb.PurgeExpiredCacheResponse(
            purged_entries=self.use_cases.cache_admin.purge_expired()
        )

    @rpc(ADMIN_ONLY)
    def InvalidateCachedImage(
        self,
        request: pb.InvalidateCachedImageRequest,
        context: grpc.ServicerContext,
        principal: Principal,
    ) -> pb.InvalidateCachedImageResponse:
        count = self.use_cases.cache_admin.invalidate_image(request.image_id)
        return pb.InvalidateCachedImageResponse(invalidated_entries=count)
