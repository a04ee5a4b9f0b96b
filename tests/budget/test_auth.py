"""Who may do what: tokens checked on every RPC, users confined to their own data."""

from __future__ import annotations

import grpc
import pytest
from recipeimage.budget.v1 import alerts_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import management_tools_pb2 as tpb
from recipeimage.budget.v1 import optimization_pb2 as opb
from recipeimage.budget.v1 import system_metrics_pb2 as mpb

from services.common.auth import Authenticator, Role
from tests.budget.conftest import reservation_states

ALL_CALLS = [
    ("GetLimits", pb.GetLimitsRequest(user_id="u1")),
    ("CheckBudget", pb.CheckBudgetRequest(user_id="u1", amount_micros=1)),
    ("ReserveBudget", pb.ReserveBudgetRequest(user_id="u1", amount_micros=1, idempotency_key="k")),
    ("CommitReservation", pb.CommitReservationRequest(reservation_id="r")),
    ("ReleaseReservation", pb.ReleaseReservationRequest(reservation_id="r")),
    (
        "RecordUsage",
        pb.RecordUsageRequest(
            usage=pb.UsageRecord(request_id="q", user_id="u1", outcome=pb.USAGE_OUTCOME_FAILED)
        ),
    ),
    (
        "RecordUsageBatch",
        pb.RecordUsageBatchRequest(
            usages=[pb.UsageRecord(request_id="q", user_id="u1", outcome=pb.USAGE_OUTCOME_FAILED)]
        ),
    ),
    ("GetUsageStats", pb.GetUsageStatsRequest(user_id="u1", period=pb.STATS_PERIOD_DAY)),
    ("ListUsage", pb.ListUsageRequest(user_id="u1")),
    ("SetSpendCap", pb.SetSpendCapRequest(user_id="u1", spend_cap=pb.LimitValues(daily_micros=1))),
    ("SetUserTier", pb.SetUserTierRequest(user_id="u1", tier=pb.USER_TIER_PRO)),
    ("SetUserLimits", pb.SetUserLimitsRequest(user_id="u1")),
    ("SetSystemLimits", pb.SetSystemLimitsRequest(daily_limit_micros=1)),
    ("ListAuditLog", pb.ListAuditLogRequest()),
    ("ReconcileLedger", pb.ReconcileLedgerRequest()),
    ("Admit", pb.AdmitRequest(user_id="u1")),
    ("BlockUser", pb.BlockUserRequest(user_id="u1", reason="spam")),
    ("UnblockUser", pb.UnblockUserRequest(user_id="u1")),
    ("ListBlocks", pb.ListBlocksRequest()),
    ("SetUserRateLimits", pb.SetUserRateLimitsRequest(user_id="u1")),
    ("AnalyzeCostOptimization", opb.AnalyzeCostOptimizationRequest(user_id="u1")),
    (
        "GrantCredit",
        tpb.GrantCreditRequest(
            user_id="u1", window=tpb.LIMIT_WINDOW_USER_DAILY, amount_micros=1, reason="r"
        ),
    ),
    ("ListUsersNearLimits", tpb.ListUsersNearLimitsRequest(min_share_basis_points=8000)),
    ("ExportUsage", tpb.ExportUsageRequest()),
    ("SimulateLimits", tpb.SimulateLimitsRequest()),
    ("GetSystemMetrics", mpb.GetSystemMetricsRequest(period=mpb.METRICS_PERIOD_DAY)),
    ("ListTopUsers", mpb.ListTopUsersRequest(period=mpb.TOP_USERS_PERIOD_DAY)),
    ("ListAlerts", apb.ListAlertsRequest(user_id="u1")),
    ("WatchAlerts", apb.WatchAlertsRequest(user_id="u1")),
    ("SilenceAlerts", apb.SilenceAlertsRequest(user_id="u1", rule="burn_rate")),
    ("UnsilenceAlerts", apb.UnsilenceAlertsRequest(user_id="u1", rule="burn_rate")),
]
# Server-streaming: the call's status comes with the stream.
STREAMING = {"ExportUsage"}
ADMISSION_CALLS = ("Admit", "BlockUser", "UnblockUser", "ListBlocks", "SetUserRateLimits")


def test_every_rpc_of_the_service_is_listed_here() -> None:
    rpcs = pb.DESCRIPTOR.services_by_name["BudgetService"].methods_by_name
    assert set(rpcs) == {method for method, _ in ALL_CALLS}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def bad_credentials(authenticator: Authenticator) -> dict[str, tuple]:
    forger = Authenticator("a-different-secret-that-is-also-long-enough-0123456789")
    return {
        "none": (),
        "not bearer": (("authorization", "Basic dTE6cGFzcw=="),),
        "expired": bearer(authenticator.mint(Role.SERVICE, "svc", ttl_seconds=-3600)),
        "forged": bearer(forger.mint(Role.ADMIN, "mallory")),
        "garbage": bearer("not-a-jwt"),
    }


@pytest.mark.parametrize(("method", "request_"), ALL_CALLS, ids=[m for m, _ in ALL_CALLS])
def test_every_rpc_needs_a_valid_token(budget, bad_credentials, tokens, method, request_) -> None:
    for name, metadata in bad_credentials.items():
        with pytest.raises(grpc.RpcError) as raised:
            answer = getattr(budget.stub, method)(request_, metadata=metadata)
            if method in STREAMING:
                list(answer)
            if method == "WatchAlerts":  # a stream: refused on its first read
                next(answer)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
    assert reservation_states(budget) == {}
    limits = budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u1"), metadata=tokens.admin())
    assert limits.windows[0].limit_source == "tier:free"
    assert limits.windows[2].limit_source == "system"


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        call
        for call in ALL_CALLS
        if call[0]
        in (
            "GetLimits",
            "CheckBudget",
            "ReserveBudget",
            "RecordUsage",
            "GetUsageStats",
            "ListUsage",
            "SetSpendCap",
            "AnalyzeCostOptimization",
        )
    ],
    ids=[
        "GetLimits",
        "CheckBudget",
        "ReserveBudget",
        "RecordUsage",
        "GetUsageStats",
        "ListUsage",
        "SetSpendCap",
        "AnalyzeCostOptimization",
    ],
)
def test_a_user_token_cannot_act_for_another_user(budget, tokens, method, request_) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        getattr(budget.stub, method)(request_, metadata=tokens.user("u2"))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_user_token_with_no_user_id_reads_its_own_data(budget, tokens) -> None:
    me = tokens.user("u2")
    assert budget.stub.GetLimits(pb.GetLimitsRequest(), metadata=me).user_id == "u2"
    held = budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id="u2", amount_micros=10_000, idempotency_key="mine"),
        metadata=tokens.service(),
    ).reservation
    budget.stub.CommitReservation(
        pb.CommitReservationRequest(reservation_id=held.reservation_id, actual_cost_micros=9_000),
        metadata=tokens.service(),
    )
    stats = budget.stub.GetUsageStats(
        pb.GetUsageStatsRequest(period=pb.STATS_PERIOD_DAY), metadata=me
    )
    assert (stats.user_id, stats.total_cost_micros) == ("u2", 9_000)


def test_a_user_token_cannot_hold_spend_or_record_money_even_its_own(budget, tokens) -> None:
    """Otherwise a user could commit its own generation at cost zero."""
    held = budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id="u1", amount_micros=10_000, idempotency_key="k"),
        metadata=tokens.service(),
    ).reservation
    owner = tokens.user("u1")
    for call, request_ in [
        (
            budget.stub.ReserveBudget,
            pb.ReserveBudgetRequest(amount_micros=10_000, idempotency_key="k2"),
        ),
        (
            budget.stub.CommitReservation,
            pb.CommitReservationRequest(reservation_id=held.reservation_id),
        ),
        (
            budget.stub.ReleaseReservation,
            pb.ReleaseReservationRequest(reservation_id=held.reservation_id),
        ),
        (
            budget.stub.RecordUsage,
            pb.RecordUsageRequest(
                usage=pb.UsageRecord(request_id="r1", outcome=pb.USAGE_OUTCOME_CACHE_HIT_EXACT)
            ),
        ),
    ]:
        with pytest.raises(grpc.RpcError) as raised:
            call(request_, metadata=owner)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reservation_states(budget) == {held.reservation_id: "held"}
    released = budget.stub.ReleaseReservation(
        pb.ReleaseReservationRequest(reservation_id=held.reservation_id),
        metadata=tokens.service(),
    ).reservation
    assert released.state == pb.RESERVATION_STATE_RELEASED


def test_service_and_admin_tokens_name_the_user(budget, tokens) -> None:
    for metadata in (tokens.service(), tokens.admin()):
        assert (
            budget.stub.GetLimits(pb.GetLimitsRequest(user_id="u9"), metadata=metadata).user_id
            == "u9"
        )
        with pytest.raises(grpc.RpcError) as raised:
            budget.stub.GetLimits(pb.GetLimitsRequest(), metadata=metadata)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("method", ADMISSION_CALLS)
def test_a_user_token_cannot_admit_block_unblock_or_set_rates_even_for_itself(
    budget, tokens, method
) -> None:
    """Admit is for trusted callers (a user must not spend its own quota
    checks or skip them); blocks and rate overrides are for admins."""
    request_ = dict(ALL_CALLS)[method]
    with pytest.raises(grpc.RpcError) as raised:
        getattr(budget.stub, method)(request_, metadata=tokens.user("u1"))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    if method != "Admit":
        with pytest.raises(grpc.RpcError) as raised:
            getattr(budget.stub, method)(request_, metadata=tokens.service())
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = budget.stub.ListBlocks(pb.ListBlocksRequest(), metadata=tokens.admin())
    assert list(listed.blocks) == []
