"""BudgetService over gRPC: proto in, one use-case call, proto out.

Authentication, roles and error statuses are @rpc's job (services.common.rpc).
Users may read their own limits and usage; only trusted callers (the image
service, other internal backends, admins) hold, spend or record money: a user
token must not be able to commit its own generation at cost zero.
"""

from __future__ import annotations

from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import budget_service_pb2_grpc

from services.budget import convert
from services.budget.domain import Usage
from services.budget.ledger import Ledger
from services.budget.reservations import Reservations
from services.budget.stats import Stats
from services.common.auth import ANY_ROLE, TRUSTED
from services.common.rpc import Guard, rpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BudgetService"].full_name


class BudgetServicer(budget_service_pb2_grpc.BudgetServiceServicer):
    def __init__(
        self, guard: Guard, reservations: Reservations, ledger: Ledger, stats: Stats
    ) -> None:
        self.guard = guard
        self._reservations = reservations
        self._ledger = ledger
        self._stats = stats

    @rpc(ANY_ROLE)
    def GetLimits(self, request, context, principal):  # type: ignore[no-untyped-def]
        view = self._reservations.limits(principal, request.user_id)
        return pb.GetLimitsResponse(
            user_id=view.user_id,
            tier=convert.tier(view.tier),
            per_generation_limit_micros=view.per_generation_micros,
            windows=[convert.window(w) for w in view.windows],
        )

    @rpc(ANY_ROLE)
    def CheckBudget(self, request, context, principal):  # type: ignore[no-untyped-def]
        check = self._reservations.check(principal, request.user_id, request.amount_micros)
        return pb.CheckBudgetResponse(
            allowed=check.allowed,
            reason=check.reason,
            windows=[convert.window(w) for w in check.windows],
        )

    @rpc(TRUSTED)
    def ReserveBudget(self, request, context, principal):  # type: ignore[no-untyped-def]
        reserved = self._reservations.reserve(
            principal, request.user_id, request.amount_micros, request.idempotency_key
        )
        return pb.ReserveBudgetResponse(
            reservation=convert.reservation(reserved.reservation), replayed=reserved.replayed
        )

    @rpc(TRUSTED)
    def CommitReservation(self, request, context, principal):  # type: ignore[no-untyped-def]
        committed = self._reservations.commit(
            principal,
            request.reservation_id,
            request.actual_cost_micros,
            _usage_of(request),
        )
        if committed.charged_micros:
            self.guard.metrics.spend_micros.labels(self.guard.metrics.service).inc(
                committed.charged_micros
            )
        return pb.CommitReservationResponse(reservation=convert.reservation(committed.reservation))

    @rpc(TRUSTED)
    def ReleaseReservation(self, request, context, principal):  # type: ignore[no-untyped-def]
        released = self._reservations.release(principal, request.reservation_id, _usage_of(request))
        return pb.ReleaseReservationResponse(reservation=convert.reservation(released))

    @rpc(TRUSTED)
    def RecordUsage(self, request, context, principal):  # type: ignore[no-untyped-def]
        recorded = self._ledger.record(principal, convert.usage_from_proto(request.usage))
        if not recorded.duplicate and recorded.usage.cost_saved_micros:
            self.guard.metrics.cost_saved_micros.labels(self.guard.metrics.service).inc(
                recorded.usage.cost_saved_micros
            )
        return pb.RecordUsageResponse(
            usage=convert.usage(recorded.usage), duplicate=recorded.duplicate
        )

    @rpc(ANY_ROLE)
    def GetUsageStats(self, request, context, principal):  # type: ignore[no-untyped-def]
        stats = self._stats.usage(
            principal, request.user_id, convert.stats_period_from_proto(request.period)
        )
        return convert.usage_stats(stats)


def _usage_of(request) -> Usage:  # type: ignore[no-untyped-def]
    return convert.usage_from_proto(request.usage) if request.HasField("usage") else Usage()
