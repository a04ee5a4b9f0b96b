"""BudgetService over gRPC: proto in, one use-case call with plain values,
proto out.

Authentication, roles and error statuses are @rpc's job (services.common.rpc).
Here the caller's principal is resolved to plain values: the user id a call
acts for (principal.acting_for: a user only for itself, a trusted caller for
the user it names), a user caller's own id where a use case must check that
loaded rows are its own, and the actor the audit log names. Users may read
their own limits and usage and cap their own spending; only trusted callers
(the image service, other internal backends, admins) hold, spend or record
money: a user token must not be able to commit its own generation at cost
zero. Tiers, overrides, system limits, the audit log and reconciliation are
for admins; so are blocks and rate overrides. Admit is for trusted callers
(ImageService asks it before every GenerateImage); a user sees its own rate
rules and block in GetLimits but can never lift a block. Cost optimization
is read like stats (a user for itself, a trusted caller for the user it
names); only an admin analyzes the whole system.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import grpc
from recipeimage.budget.v1 import alerts_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import budget_service_pb2_grpc
from recipeimage.budget.v1 import management_tools_pb2 as tpb
from recipeimage.budget.v1 import optimization_pb2 as opb
from recipeimage.budget.v1 import system_metrics_pb2 as mpb

from services.budget import (
    convert,
    convert_admission,
    convert_alerts,
    convert_metrics,
    convert_optimization,
    convert_tools,
)
from services.budget.app.admission import Admission
from services.budget.app.alert_views import AlertViews, resolve_subject
from services.budget.app.blocks import Blocks
from services.budget.app.ledger import Ledger
from services.budget.app.management import Management
from services.budget.app.management_tools import ManagementTools
from services.budget.app.optimization import Optimization
from services.budget.app.reconciliation import Reconciler
from services.budget.app.reservations import Reservations
from services.budget.app.stats import Stats
from services.budget.app.system_metrics import SystemMetricsReports
from services.budget.domain.alerts import AlertFilter
from services.budget.domain.audit import Actor
from services.budget.domain.optimization import Scope as AnalysisScope
from services.budget.domain.usage import ID_LENGTH
from services.budget.domain.validation import Violations
from services.budget.domain.windows import Scope
from services.common.auth import ADMIN_ONLY, ANY_ROLE, TRUSTED, Principal, Role
from services.common.errors import DomainError, InvalidArgument, PermissionDenied
from services.common.rpc import Guard, rpc
from services.common.timestamps import optional_from_proto

# Alerts are for the user they are about and for admins; an internal backend
# acting for users has no need to read them.
USER_OR_ADMIN = frozenset({Role.USER, Role.ADMIN})
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BudgetService"].full_name
Context = grpc.ServicerContext
T = TypeVar("T")


def acting_for(
    principal: Principal, requested: str, field: str = "user_id"
) -> tuple[str, Violations]:
    """The user id a call acts for, and the request's violations so far: a
    missing or too long id is collected with the request's other fields (the
    use case adds them); PermissionDenied (a user naming someone else) is
    raised at once."""
    violations = Violations()
    if len(requested) > ID_LENGTH:
        violations.add(field, f"at most {ID_LENGTH} characters")
        return "", violations
    try:
        user_id = principal.acting_for(requested, field)
    except InvalidArgument as error:
        for violation in error.violations:
            violations.add(violation.field, violation.description)
        return "", violations
    if len(user_id) > ID_LENGTH:  # a token's subject, too long to store
        violations.add(field, f"at most {ID_LENGTH} characters")
    return user_id, violations


def system_or_user(
    principal: Principal, requested: str, system: bool, naming: str
) -> tuple[str, Violations]:
    """ "" for a call about the whole system (which names no user: naming says
    what made it the system's), else acting_for's user id."""
    if not system:
        return acting_for(principal, requested)
    violations = Violations()
    if requested:
        violations.add("user_id", f"must be empty with {naming}")
    return "", violations


def only_user(principal: Principal) -> str | None:
    """A user caller's own id (it may touch only its own rows); None for others."""
    return principal.subject if principal.role is Role.USER else None


def actor(principal: Principal) -> Actor:
    return Actor(principal.subject, principal.role.value)


class BudgetServicer(budget_service_pb2_grpc.BudgetServiceServicer):
    def __init__(
        self,
        guard: Guard,
        reservations: Reservations,
        ledger: Ledger,
        stats: Stats,
        management: Management,
        reconciler: Reconciler,
        admission: Admission,
        blocks: Blocks,
        *,
        optimization: Optimization,
        tools: ManagementTools,
        system_metrics: SystemMetricsReports,
        alerts: AlertViews,
    ) -> None:
        self._alerts = alerts
        self.guard = guard
        self._reservations = reservations
        self._ledger = ledger
        self._stats = stats
        self._management = management
        self._reconciler = reconciler
        self._admission = admission
        self._blocks = blocks
        self._optimization = optimization
        self._tools = tools
        self._system_metrics = system_metrics

    @rpc(ANY_ROLE)
    def GetLimits(
        self, request: pb.GetLimitsRequest, context: Context, principal: Principal
    ) -> pb.GetLimitsResponse:
        user_id, violations = acting_for(principal, request.user_id)
        violations.raise_if_any()
        return convert.limits(self._reservations.limits(user_id))

    @rpc(ANY_ROLE)
    def CheckBudget(
        self, request: pb.CheckBudgetRequest, context: Context, principal: Principal
    ) -> pb.CheckBudgetResponse:
        user_id, violations = acting_for(principal, request.user_id)
        check = self._reservations.check(
            user_id,
            request.amount_micros,
            violations,
            include_admission=request.include_admission,
        )
        return convert.check_budget_response(check)

    @rpc(TRUSTED)
    def ReserveBudget(
        self, request: pb.ReserveBudgetRequest, context: Context, principal: Principal
    ) -> pb.ReserveBudgetResponse:
        user_id, violations = acting_for(principal, request.user_id)
        reserved = self._reservations.reserve(
            user_id, request.amount_micros, request.idempotency_key, violations
        )
        return pb.ReserveBudgetResponse(
            reservation=convert.reservation(reserved.reservation), replayed=reserved.replayed
        )

    @rpc(TRUSTED)
    def CommitReservation(
        self, request: pb.CommitReservationRequest, context: Context, principal: Principal
    ) -> pb.CommitReservationResponse:
        committed = self._reservations.commit(
            request.reservation_id,
            request.actual_cost_micros,
            convert.usage_of(request),
            only_user=only_user(principal),
            violations=Violations(),
        )
        if committed.charged_micros:
            self.guard.metrics.spend_micros.labels(self.guard.metrics.service).inc(
                committed.charged_micros
            )
        return pb.CommitReservationResponse(reservation=convert.reservation(committed.reservation))

    @rpc(TRUSTED)
    def ReleaseReservation(
        self, request: pb.ReleaseReservationRequest, context: Context, principal: Principal
    ) -> pb.ReleaseReservationResponse:
        released = self._reservations.release(
            request.reservation_id,
            convert.usage_of(request),
            only_user=only_user(principal),
            violations=Violations(),
        )
        return pb.ReleaseReservationResponse(reservation=convert.reservation(released))

    @rpc(TRUSTED)
    def RecordUsage(
        self, request: pb.RecordUsageRequest, context: Context, principal: Principal
    ) -> pb.RecordUsageResponse:
        user_id, violations = acting_for(principal, request.usage.user_id, "usage.user_id")
        recorded = self._ledger.record(user_id, convert.usage_from_proto(request.usage), violations)
        if not recorded.duplicate and recorded.usage.cost_saved_micros:
            self.guard.metrics.cost_saved_micros.labels(self.guard.metrics.service).inc(
                recorded.usage.cost_saved_micros
            )
        return pb.RecordUsageResponse(
            usage=convert.usage(recorded.usage), duplicate=recorded.duplicate
        )

    @rpc(TRUSTED)
    def RecordUsageBatch(
        self, request: pb.RecordUsageBatchRequest, context: Context, principal: Principal
    ) -> pb.RecordUsageBatchResponse:
        records = []
        for record in request.usages:
            user_id, violations = acting_for(principal, record.user_id, "usage.user_id")
            records.append((user_id, convert.usage_from_proto(record), violations))
        results = self._ledger.record_each(records)
        for result in results:
            if isinstance(result, DomainError) or result.duplicate:
                continue
            if result.usage.cost_saved_micros:
                self.guard.metrics.cost_saved_micros.labels(self.guard.metrics.service).inc(
                    result.usage.cost_saved_micros
                )
        return pb.RecordUsageBatchResponse(
            results=[
                convert.record_usage_result(record, result)
                for record, result in zip(request.usages, results, strict=True)
            ]
        )

    @rpc(ANY_ROLE)
    def GetUsageStats(
        self, request: pb.GetUsageStatsRequest, context: Context, principal: Principal
    ) -> pb.GetUsageStatsResponse:
        user_id, violations = acting_for(principal, request.user_id)
        stats = self._stats.usage(
            user_id,
            convert.stats_period_from_proto(request.period),
            violations,
            start=optional_from_proto(violations, request, "start_time"),
            end=optional_from_proto(violations, request, "end_time"),
            time_zone=request.time_zone,
        )
        return convert.usage_stats(stats)

    @rpc(ANY_ROLE)
    def ListUsage(
        self, request: pb.ListUsageRequest, context: Context, principal: Principal
    ) -> pb.ListUsageResponse:
        user_id, violations = acting_for(principal, request.user_id)
        page = self._stats.list_usage(
            user_id,
            violations,
            page_size=request.page_size,
            page_token=request.page_token,
            start=optional_from_proto(violations, request, "start_time"),
            end=optional_from_proto(violations, request, "end_time"),
        )
        return convert.usage_page(page)

    @rpc(ADMIN_ONLY)
    def SetUserTier(
        self, request: pb.SetUserTierRequest, context: Context, principal: Principal
    ) -> pb.SetUserTierResponse:
        user_id, violations = acting_for(principal, request.user_id)
        settings = self._management.set_user_tier(
            actor(principal), user_id, convert.tier_from_proto(request.tier), violations
        )
        return pb.SetUserTierResponse(settings=convert.user_settings(settings))

    @rpc(ADMIN_ONLY)
    def SetUserLimits(
        self, request: pb.SetUserLimitsRequest, context: Context, principal: Principal
    ) -> pb.SetUserLimitsResponse:
        user_id, violations = acting_for(principal, request.user_id)
        settings = self._management.set_user_limits(
            actor(principal),
            user_id,
            convert.limit_values_from_proto(request.overrides),
            violations,
        )
        return pb.SetUserLimitsResponse(settings=convert.user_settings(settings))

    @rpc(ANY_ROLE)
    def SetSpendCap(
        self, request: pb.SetSpendCapRequest, context: Context, principal: Principal
    ) -> pb.SetSpendCapResponse:
        user_id, violations = acting_for(principal, request.user_id)
        settings = self._management.set_spend_cap(
            actor(principal),
            user_id,
            convert.limit_values_from_proto(request.spend_cap),
            violations,
        )
        return pb.SetSpendCapResponse(settings=convert.user_settings(settings))

    @rpc(ADMIN_ONLY)
    def SetSystemLimits(
        self, request: pb.SetSystemLimitsRequest, context: Context, principal: Principal
    ) -> pb.SetSystemLimitsResponse:
        daily, monthly = convert.system_limits_from_proto(request)
        limits = self._management.set_system_limits(actor(principal), daily, monthly)
        return convert.system_limits(limits)

    @rpc(ADMIN_ONLY)
    def ListAuditLog(
        self, request: pb.ListAuditLogRequest, context: Context, principal: Principal
    ) -> pb.ListAuditLogResponse:
        page = self._management.audit_log(
            page_size=request.page_size,
            page_token=request.page_token,
            target_user_id=request.target_user_id,
        )
        return pb.ListAuditLogResponse(
            entries=[convert.audit_entry(entry) for entry in page.entries],
            next_page_token=page.next_page_token,
        )

    @rpc(ADMIN_ONLY)
    def ReconcileLedger(
        self, request: pb.ReconcileLedgerRequest, context: Context, principal: Principal
    ) -> pb.ReconcileLedgerResponse:
        violations = Violations()
        since = optional_from_proto(violations, request, "start_time")
        violations.raise_if_any()
        return convert.reconciliation(self._reconciler.run(since), self._reconciler.zone)

    # Admission control

    @rpc(TRUSTED)
    def Admit(
        self, request: pb.AdmitRequest, context: Context, principal: Principal
    ) -> pb.AdmitResponse:
        user_id, violations = acting_for(principal, request.user_id)
        states, attempt = self._admission.admit(user_id, violations, request.request_id)
        return pb.AdmitResponse(
            rate_rules=[convert_admission.rate_rule(state) for state in states],
            attempt=convert_admission.attempt_state(attempt),
        )

    @rpc(ADMIN_ONLY)
    def BlockUser(
        self, request: pb.BlockUserRequest, context: Context, principal: Principal
    ) -> pb.BlockUserResponse:
        user_id, violations = acting_for(principal, request.user_id)
        expires_at = optional_from_proto(violations, request, "expire_time")
        block = self._blocks.block_user(
            actor(principal), user_id, request.reason, expires_at, violations
        )
        return pb.BlockUserResponse(block=convert_admission.block(block))

    @rpc(ADMIN_ONLY)
    def UnblockUser(
        self, request: pb.UnblockUserRequest, context: Context, principal: Principal
    ) -> pb.UnblockUserResponse:
        user_id, violations = acting_for(principal, request.user_id)
        block = self._blocks.unblock_user(actor(principal), user_id, violations)
        return pb.UnblockUserResponse(block=convert_admission.block(block))

    @rpc(ADMIN_ONLY)
    def ListBlocks(
        self, request: pb.ListBlocksRequest, context: Context, principal: Principal
    ) -> pb.ListBlocksResponse:
        page = self._blocks.list_blocks(page_size=request.page_size, page_token=request.page_token)
        return convert_admission.block_page(page)

    @rpc(ADMIN_ONLY)
    def SetUserRateLimits(
        self, request: pb.SetUserRateLimitsRequest, context: Context, principal: Principal
    ) -> pb.SetUserRateLimitsResponse:
        user_id, violations = acting_for(principal, request.user_id)
        settings = self._management.set_user_rate_limits(
            actor(principal),
            user_id,
            convert_admission.rate_limit_values_from_proto(request.overrides),
            violations,
        )
        return pb.SetUserRateLimitsResponse(
            user_id=settings.user_id,
            overrides=convert_admission.rate_limit_values(settings.rate_overrides),
        )

    # Cost optimization

    @rpc(ANY_ROLE)
    def AnalyzeCostOptimization(
        self, request: opb.AnalyzeCostOptimizationRequest, context: Context, principal: Principal
    ) -> opb.AnalyzeCostOptimizationResponse:
        scope = convert_optimization.scope_from_proto(request.scope)
        system = scope is AnalysisScope.SYSTEM
        if system and principal.role is not Role.ADMIN:
            raise PermissionDenied("only an admin may analyze the whole system")
        user_id, violations = system_or_user(principal, request.user_id, system, "scope SYSTEM")
        analysis = self._optimization.analyze(
            user_id,
            scope,
            violations,
            start=optional_from_proto(violations, request, "start_time"),
            end=optional_from_proto(violations, request, "end_time"),
        )
        return convert_optimization.analysis(analysis)

    # Management tools (admin)

    @rpc(ADMIN_ONLY)
    def GrantCredit(
        self, request: tpb.GrantCreditRequest, context: Context, principal: Principal
    ) -> tpb.GrantCreditResponse:
        window = convert_tools.window_from_proto(request.window)
        system = window is not None and window[0] is Scope.SYSTEM
        user_id, violations = system_or_user(principal, request.user_id, system, "a system window")
        expires_at = optional_from_proto(violations, request, "expire_time")
        credit = self._tools.credits.grant(
            actor(principal),
            window,
            user_id,
            request.amount_micros,
            request.reason,
            expires_at,
            violations,
        )
        return tpb.GrantCreditResponse(credit=convert_tools.credit(credit, credit.created_at))

    @rpc(ADMIN_ONLY)
    def ListUsersNearLimits(
        self, request: tpb.ListUsersNearLimitsRequest, context: Context, principal: Principal
    ) -> tpb.ListUsersNearLimitsResponse:
        page = self._tools.near_limits.list_users(
            request.min_share_basis_points, request.page_size, request.page_token
        )
        return convert_tools.near_limits(page)

    @rpc(ADMIN_ONLY)
    def ExportUsage(
        self, request: tpb.ExportUsageRequest, context: Context, principal: Principal
    ) -> Iterator[tpb.ExportUsageResponse]:
        violations = Violations()
        if len(request.user_id) > ID_LENGTH:
            violations.add("user_id", f"at most {ID_LENGTH} characters")
        messages = self._tools.export.open(
            request.user_id,
            optional_from_proto(violations, request, "start_time"),
            optional_from_proto(violations, request, "end_time"),
            request.cursor,
            violations,
        )
        return _until_cancelled(context, map(convert_tools.export_message, messages))

    @rpc(ADMIN_ONLY)
    def SimulateLimits(
        self, request: tpb.SimulateLimitsRequest, context: Context, principal: Principal
    ) -> tpb.SimulateLimitsResponse:
        violations = Violations()
        replay = self._tools.simulation.run(
            optional_from_proto(violations, request, "start_time"),
            optional_from_proto(violations, request, "end_time"),
            convert_tools.proposed_tiers(request.tiers),
            convert_tools.proposed_system(request),
            violations,
        )
        return convert_tools.simulation(replay)

    # System metrics

    @rpc(ADMIN_ONLY)
    def GetSystemMetrics(
        self, request: mpb.GetSystemMetricsRequest, context: Context, principal: Principal
    ) -> mpb.GetSystemMetricsResponse:
        violations = Violations()
        period = convert_metrics.metrics_period_from_proto(request.period)
        metrics = self._system_metrics.metrics(
            period,
            violations,
            start=optional_from_proto(violations, request, "start_time"),
            end=optional_from_proto(violations, request, "end_time"),
            time_zone=request.time_zone,
        )
        assert period is not None
        return convert_metrics.system_metrics(metrics, period)

    @rpc(ADMIN_ONLY)
    def ListTopUsers(
        self, request: mpb.ListTopUsersRequest, context: Context, principal: Principal
    ) -> mpb.ListTopUsersResponse:
        violations = Violations()
        page = self._system_metrics.top_users(
            convert_metrics.top_users_span_from_proto(request.period),
            convert_metrics.top_users_order_from_proto(request.order_by),
            violations,
            at=optional_from_proto(violations, request, "time"),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return convert_metrics.top_users(page)

    # Alerts (a user sees and silences only its own)

    @rpc(USER_OR_ADMIN)
    def ListAlerts(
        self, request: apb.ListAlertsRequest, context: Context, principal: Principal
    ) -> apb.ListAlertsResponse:
        violations = Violations()
        subject = resolve_subject(
            only_user(principal),
            convert_alerts.subject_request(request),
            violations,
            required=False,
        )
        where = AlertFilter(
            rule=request.rule,
            severity=convert_alerts.severity_name(request.severity),
            start=optional_from_proto(violations, request, "start_time"),
            end=optional_from_proto(violations, request, "end_time"),
        )
        page = self._alerts.list_alerts(
            subject,
            where,
            violations,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return convert_alerts.alert_page(page)

    @rpc(USER_OR_ADMIN)
    def WatchAlerts(
        self, request: apb.WatchAlertsRequest, context: Context, principal: Principal
    ) -> Iterator[apb.WatchAlertsResponse]:
        """Checked before the stream starts; then one message an alert."""
        violations = Violations()
        subject = resolve_subject(
            only_user(principal),
            convert_alerts.subject_request(request),
            violations,
            required=False,
        )
        stream = self._alerts.watch(subject, request.cursor, violations, context.is_active)
        return (
            apb.WatchAlertsResponse(alert=convert_alerts.alert(alert), cursor=cursor)
            for alert, cursor in stream
        )

    @rpc(USER_OR_ADMIN)
    def SilenceAlerts(
        self, request: apb.SilenceAlertsRequest, context: Context, principal: Principal
    ) -> apb.SilenceAlertsResponse:
        violations = Violations()
        requested = convert_alerts.subject_request(request)
        subject = resolve_subject(only_user(principal), requested, violations, required=True)
        until = optional_from_proto(violations, request, "expire_time")
        silence = self._alerts.silence(principal.subject, subject, request.rule, until, violations)
        return apb.SilenceAlertsResponse(silence=convert_alerts.silence(silence))

    @rpc(USER_OR_ADMIN)
    def UnsilenceAlerts(
        self, request: apb.UnsilenceAlertsRequest, context: Context, principal: Principal
    ) -> apb.UnsilenceAlertsResponse:
        violations = Violations()
        requested = convert_alerts.subject_request(request)
        subject = resolve_subject(only_user(principal), requested, violations, required=True)
        self._alerts.unsilence(subject, request.rule, violations)
        return apb.UnsilenceAlertsResponse()


def _until_cancelled(context: Context, messages: Iterator[T]) -> Iterator[T]:
    """Stream messages while the client is there: a cancelled export stops
    reading the database at the next message."""
    for message in messages:
        if not context.is_active():
            return
        yield message
