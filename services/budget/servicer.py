"""BudgetService over gRPC: proto in, one use-case call, proto out.

Authentication, roles and error statuses are @rpc's job (services.common.rpc).
Users may read their own limits and usage and cap their own spending; only
trusted callers (the image service, other internal backends, admins) hold,
spend or record money: a user token must not be able to commit its own
generation at cost zero. Tiers, overrides, system limits, the audit log and
reconciliation are for admins.
"""

from __future__ import annotations

from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import budget_service_pb2_grpc

from services.budget import convert
from services.budget.domain import Usage
from services.budget.ledger import Ledger
from services.budget.management import Management
from services.budget.reconcile import Reconciler
from services.budget.reservations import Reservations
from services.budget.stats import Stats
from services.common.auth import ADMIN_ONLY, ANY_ROLE, TRUSTED
from services.common.rpc import Guard, rpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BudgetService"].full_name


class BudgetServicer(budget_service_pb2_grpc.BudgetServiceServicer):
    def __init__(
        self,
        guard: Guard,
        reservations: Reservations,
        ledger: Ledger,
        stats: Stats,
        management: Management,
        reconciler: Reconciler,
    ) -> None:
        self.guard = guard
        self._reservations = reservations
        self._ledger = ledger
        self._stats = stats
        self._management = management
        self._reconciler = reconciler

    @rpc(ANY_ROLE)
    def GetLimits(self, request, context, principal):  # type: ignore[no-untyped-def]
        return convert.limits(self._reservations.limits(principal, request.user_id))

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
            principal,
            request.user_id,
            convert.stats_period_from_proto(request.period),
            start=convert.optional_timestamp(request, "start_time"),
            end=convert.optional_timestamp(request, "end_time"),
            time_zone=request.time_zone,
        )
        return convert.usage_stats(stats)

    @rpc(ANY_ROLE)
    def ListUsage(self, request, context, principal):  # type: ignore[no-untyped-def]
        page = self._stats.list_usage(
            principal,
            request.user_id,
            page_size=request.page_size,
            page_token=request.page_token,
            start=convert.optional_timestamp(request, "start_time"),
            end=convert.optional_timestamp(request, "end_time"),
        )
        return convert.usage_page(page)

    @rpc(ADMIN_ONLY)
    def SetUserTier(self, request, context, principal):  # type: ignore[no-untyped-def]
        settings = self._management.set_user_tier(
            principal, request.user_id, convert.tier_from_proto(request.tier)
        )
        return pb.SetUserTierResponse(settings=convert.user_settings(settings))

    @rpc(ADMIN_ONLY)
    def SetUserLimits(self, request, context, principal):  # type: ignore[no-untyped-def]
        settings = self._management.set_user_limits(
            principal, request.user_id, convert.limit_values_from_proto(request.overrides)
        )
        return pb.SetUserLimitsResponse(settings=convert.user_settings(settings))

    @rpc(ANY_ROLE)
    def SetSpendCap(self, request, context, principal):  # type: ignore[no-untyped-def]
        settings = self._management.set_spend_cap(
            principal, request.user_id, convert.limit_values_from_proto(request.spend_cap)
        )
        return pb.SetSpendCapResponse(settings=convert.user_settings(settings))

    @rpc(ADMIN_ONLY)
    def SetSystemLimits(self, request, context, principal):  # type: ignore[no-untyped-def]
        limits = self._management.set_system_limits(
            principal,
            request.daily_limit_micros if request.HasField("daily_limit_micros") else None,
            request.monthly_limit_micros if request.HasField("monthly_limit_micros") else None,
        )
        return convert.system_limits(limits)

    @rpc(ADMIN_ONLY)
    def ListAuditLog(self, request, context, principal):  # type: ignore[no-untyped-def]
        page = self._management.audit_log(
            principal,
            page_size=request.page_size,
            page_token=request.page_token,
            target_user_id=request.target_user_id,
        )
        return pb.ListAuditLogResponse(
            entries=[convert.audit_entry(entry) for entry in page.entries],
            next_page_token=page.next_page_token,
        )

    @rpc(ADMIN_ONLY)
    def ReconcileLedger(self, request, context, principal):  # type: ignore[no-untyped-def]
        result = self._reconciler.run(convert.optional_timestamp(request, "start_time"))
        return convert.reconciliation(result, self._reconciler.zone)


def _usage_of(request) -> Usage:  # type: ignore[no-untyped-def]
    return convert.usage_from_proto(request.usage) if request.HasField("usage") else Usage()
