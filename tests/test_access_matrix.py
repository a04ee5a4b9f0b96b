"""The access matrix: every RPC of both services against every kind of caller,
over real gRPC on loopback, with the status code each cell must get.

Columns (callers):
  none         no authorization metadata
  expired      a correctly signed admin token that expired an hour ago
  forged       an admin token signed with another secret
  alg_none     an unsigned admin token (`alg: none`)
  wrong_aud    a correctly signed admin token for another audience
  user_self    a user token for the user the request names
  user_other   a user token for another user than the one the request names
  service      a service token (an internal backend acting for the named user)
  admin        an admin token

The four bad credentials all carry admin claims, so the credential is the only
reason they fail. The servers check an audience (JWT `aud`), so a token for
another audience is refused; every good token carries the right one.

Codes: OK, UNAUTH (UNAUTHENTICATED), DENIED (PERMISSION_DENIED), and OPEN for
WatchAlerts: an accepted watch streams until the client's deadline, so an
allowed cell ends with DEADLINE_EXCEEDED after the stream was open (a refusal
comes at once, before any deadline).

Rows that are the same for every user (GetImage, StreamImage: images are content addressed
and shared by the cache, so any caller may read one; role-only RPCs that name
no user) give user_other what they give user_self.

Each row's request is valid for an allowed caller: it is built afresh for each
cell (a held reservation, a block, a silence, a cached image made just before),
so the only reason a cell can fail is access. The rows are checked against the
services' descriptors: an RPC added without its row, or a row for an RPC that
no longer exists, fails test_every_rpc_of_both_services_has_a_row.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest
from google.protobuf.message import Message
from recipeimage.budget.v1 import alerts_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as bpb
from recipeimage.budget.v1 import management_tools_pb2 as tpb
from recipeimage.budget.v1 import optimization_pb2 as opb
from recipeimage.budget.v1 import system_metrics_pb2 as mpb
from recipeimage.image.v1 import image_service_pb2 as ipb

from services.common.auth import ALGORITHM, Authenticator, Role
from services.common.timestamps import to_proto
from tests.conftest import TEST_SECRET
from tests.support.image_server import RunningPair, running_pair

AUDIENCE = "recipeimage-access-matrix"
OTHER_USER = "intruder"
WATCH_DEADLINE_SECONDS = 1.5

COLUMNS = (
    "none",
    "expired",
    "forged",
    "alg_none",
    "wrong_aud",
    "user_self",
    "user_other",
    "service",
    "admin",
)

MATRIX_TEXT = """
BudgetService           none   expired forged alg_none wrong_aud user_self user_other service admin
GetLimits               UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        DENIED     OK      OK
CheckBudget             UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        DENIED     OK      OK
ReserveBudget           UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     OK      OK
CommitReservation       UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     OK      OK
ReleaseReservation      UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     OK      OK
RecordUsage             UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     OK      OK
RecordUsageBatch        UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     OK      OK
GetUsageStats           UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        DENIED     OK      OK
ListUsage               UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        DENIED     OK      OK
SetUserTier             UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
SetUserLimits           UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
SetSpendCap             UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        DENIED     OK      OK
SetSystemLimits         UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
ListAuditLog            UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
ReconcileLedger         UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
Admit                   UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     OK      OK
BlockUser               UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
UnblockUser             UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
ListBlocks              UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
SetUserRateLimits       UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
AnalyzeCostOptimization UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        DENIED     OK      OK
GrantCredit             UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
ListUsersNearLimits     UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
ExportUsage             UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
SimulateLimits          UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
GetSystemMetrics        UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
ListTopUsers            UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
ListAlerts              UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        DENIED     DENIED  OK
WatchAlerts             UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OPEN      DENIED     DENIED  OPEN
SilenceAlerts           UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        DENIED     DENIED  OK
UnsilenceAlerts         UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        DENIED     DENIED  OK
ImageService            none   expired forged alg_none wrong_aud user_self user_other service admin
GenerateImage           UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        DENIED     OK      OK
QuoteImage              UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        DENIED     OK      OK
GetImage                UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        OK         OK      OK
StreamImage             UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    OK        OK         OK      OK
GetCacheStats           UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     OK      OK
PurgeExpiredCache       UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
InvalidateCachedImage   UNAUTH UNAUTH  UNAUTH UNAUTH   UNAUTH    DENIED    DENIED     DENIED  OK
"""

CODES = {
    "OK": grpc.StatusCode.OK,
    "UNAUTH": grpc.StatusCode.UNAUTHENTICATED,
    "DENIED": grpc.StatusCode.PERMISSION_DENIED,
    "OPEN": grpc.StatusCode.DEADLINE_EXCEEDED,
}


def parse_matrix(text: str) -> dict[str, dict[str, str]]:
    """{"Service.Rpc": {column: code}}; a line naming a service heads its rows
    and repeats the column names."""
    rows: dict[str, dict[str, str]] = {}
    service = ""
    for line in text.strip().splitlines():
        first, *cells = line.split()
        if first.endswith("Service"):
            assert tuple(cells) == COLUMNS, f"{first}: columns {cells}"
            service = first
            continue
        name = f"{service}.{first}"
        assert len(cells) == len(COLUMNS), f"{name}: {len(cells)} cells, not {len(COLUMNS)}"
        assert set(cells) <= set(CODES), f"{name}: unknown code in {cells}"
        assert name not in rows, f"{name} has two rows"
        rows[name] = dict(zip(COLUMNS, cells, strict=True))
    return rows


MATRIX = parse_matrix(MATRIX_TEXT)
DESCRIPTORS = {
    "BudgetService": bpb.DESCRIPTOR.services_by_name["BudgetService"],
    "ImageService": ipb.DESCRIPTOR.services_by_name["ImageService"],
}


def descriptor_rpcs() -> set[str]:
    return {
        f"{service}.{method.name}"
        for service, descriptor in DESCRIPTORS.items()
        for method in descriptor.methods
    }


def test_every_rpc_of_both_services_has_a_row() -> None:
    rpcs = descriptor_rpcs()
    assert sorted(rpcs - set(MATRIX)) == [], "RPCs without a row in the access matrix"
    assert sorted(set(MATRIX) - rpcs) == [], "rows for RPCs the services no longer have"
    assert sorted(rpcs - set(REQUESTS)) == [], "RPCs without a valid request here"
    assert sorted(set(REQUESTS) - rpcs) == [], "requests for RPCs that no longer exist"


# ---- the servers and the callers ----------------------------------------------------

SOUP = ipb.Recipe(
    recipe_id="r-soup",
    title="Broccoli Soup with Coconut Milk",
    ingredients=["1 can of coconut milk", "3 cloves garlic", "2 heads of broccoli"],
    instructions=["Simmer the broccoli in the coconut milk.", "Puree."],
    categories=["Soup"],
)


@dataclass
class World:
    """The running pair and the means to prepare a request's state."""

    pair: RunningPair
    admin: tuple[tuple[str, str], ...]
    service: tuple[tuple[str, str], ...]
    _serial: Iterator[int]

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self._serial)}"

    def held_reservation(self, user_id: str) -> str:
        reply = self.pair.budget.stub.ReserveBudget(
            bpb.ReserveBudgetRequest(
                user_id=user_id, amount_micros=10_000, idempotency_key=self.fresh("hold")
            ),
            metadata=self.service,
        )
        return str(reply.reservation.reservation_id)

    def cached_image(self, user_id: str, title: str = "Broccoli Soup with Coconut Milk") -> str:
        recipe = ipb.Recipe()
        recipe.CopyFrom(SOUP)
        recipe.title = title
        reply = self.pair.image.GenerateImage(
            ipb.GenerateImageRequest(user_id=user_id, recipe=recipe), metadata=self.service
        )
        return str(reply.image.image_id)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def caller_metadata(column: str, subject: str) -> tuple[tuple[str, str], ...]:
    """The metadata a column's caller sends, for a request that names `subject`."""
    good = Authenticator(TEST_SECRET, audience=AUDIENCE)
    now = int(time.time())
    admin_claims = {"sub": "ops", "role": "admin", "iat": now, "exp": now + 600, "aud": AUDIENCE}
    if column == "none":
        return ()
    if column == "expired":
        return bearer(jwt.encode({**admin_claims, "exp": now - 3600}, TEST_SECRET, ALGORITHM))
    if column == "forged":
        forger = "a-different-secret-that-is-also-long-enough-0123456789"
        return bearer(jwt.encode(admin_claims, forger, ALGORITHM))
    if column == "alg_none":
        return bearer(jwt.encode(admin_claims, None, algorithm="none"))
    if column == "wrong_aud":
        return bearer(jwt.encode({**admin_claims, "aud": "another-api"}, TEST_SECRET, ALGORITHM))
    if column == "user_self":
        return bearer(good.mint(Role.USER, subject))
    if column == "user_other":
        return bearer(good.mint(Role.USER, OTHER_USER))
    if column == "service":
        return bearer(good.mint(Role.SERVICE, "recipe-backend"))
    if column == "admin":
        return bearer(good.mint(Role.ADMIN, "ops"))
    raise AssertionError(f"unknown column {column}")


@pytest.fixture(scope="module")
def world(sqlite_databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    database_url = sqlite_databases.create_copy(tmp_path_factory.mktemp("access-matrix"))
    authenticator = Authenticator(TEST_SECRET, audience=AUDIENCE)
    with running_pair(database_url, authenticator) as pair:
        yield World(
            pair,
            admin=bearer(authenticator.mint(Role.ADMIN, "ops")),
            service=bearer(authenticator.mint(Role.SERVICE, "recipe-backend")),
            _serial=itertools.count(),
        )


# ---- a valid request for each RPC ---------------------------------------------------
# Each row: the user its request names (the user_self caller's subject) and a
# function that prepares what the request needs and returns it. Rows that
# change a user's settings name a user of their own, so they cannot change
# what another row's request gets.

NOW = datetime.now(UTC)
RANGE = {"start_time": to_proto(NOW - timedelta(days=2)), "end_time": to_proto(NOW)}
U1 = "u1"

Build = Callable[[World, str], Message]


def usage(world: World, user_id: str, outcome: int) -> bpb.UsageRecord:
    return bpb.UsageRecord(
        request_id=world.fresh("attempt"), user_id=user_id, outcome=outcome, model="gpt-image-1.5"
    )


def commit(world: World, user: str) -> Message:
    return bpb.CommitReservationRequest(
        reservation_id=world.held_reservation(user), actual_cost_micros=9_000
    )


def release(world: World, user: str) -> Message:
    return bpb.ReleaseReservationRequest(reservation_id=world.held_reservation(user))


def unblock(world: World, user: str) -> Message:
    world.pair.budget.stub.BlockUser(
        bpb.BlockUserRequest(user_id=user, reason="matrix"), metadata=world.admin
    )
    return bpb.UnblockUserRequest(user_id=user)


def unsilence(world: World, user: str) -> Message:
    world.pair.budget.stub.SilenceAlerts(
        apb.SilenceAlertsRequest(user_id=user, rule="burn_rate"), metadata=world.admin
    )
    return apb.UnsilenceAlertsRequest(user_id=user, rule="burn_rate")


def invalidate(world: World, user: str) -> Message:
    # Its own dish each time: the cell invalidates a live entry made for it.
    image_id = world.cached_image(user, title=f"Tomato Soup number {world.fresh('dish')}")
    return ipb.InvalidateCachedImageRequest(image_id=image_id)


REQUESTS: dict[str, tuple[str, Build]] = {
    "BudgetService.GetLimits": (U1, lambda w, u: bpb.GetLimitsRequest(user_id=u)),
    "BudgetService.CheckBudget": (
        U1,
        lambda w, u: bpb.CheckBudgetRequest(user_id=u, amount_micros=1_000),
    ),
    "BudgetService.ReserveBudget": (
        U1,
        lambda w, u: bpb.ReserveBudgetRequest(
            user_id=u, amount_micros=1_000, idempotency_key=w.fresh("key")
        ),
    ),
    "BudgetService.CommitReservation": (U1, commit),
    "BudgetService.ReleaseReservation": (U1, release),
    "BudgetService.RecordUsage": (
        U1,
        lambda w, u: bpb.RecordUsageRequest(usage=usage(w, u, bpb.USAGE_OUTCOME_FAILED)),
    ),
    "BudgetService.RecordUsageBatch": (
        U1,
        lambda w, u: bpb.RecordUsageBatchRequest(
            usages=[usage(w, u, bpb.USAGE_OUTCOME_FAILED), usage(w, u, bpb.USAGE_OUTCOME_FAILED)]
        ),
    ),
    "BudgetService.GetUsageStats": (
        U1,
        lambda w, u: bpb.GetUsageStatsRequest(user_id=u, period=bpb.STATS_PERIOD_DAY),
    ),
    "BudgetService.ListUsage": (U1, lambda w, u: bpb.ListUsageRequest(user_id=u)),
    "BudgetService.SetUserTier": (
        "tiered",
        lambda w, u: bpb.SetUserTierRequest(user_id=u, tier=bpb.USER_TIER_PRO),
    ),
    "BudgetService.SetUserLimits": (
        "overridden",
        lambda w, u: bpb.SetUserLimitsRequest(
            user_id=u, overrides=bpb.LimitValues(daily_micros=5_000_000)
        ),
    ),
    "BudgetService.SetSpendCap": (
        "capped",
        lambda w, u: bpb.SetSpendCapRequest(
            user_id=u, spend_cap=bpb.LimitValues(daily_micros=100_000)
        ),
    ),
    # No field: the configured system limits, as before.
    "BudgetService.SetSystemLimits": (U1, lambda w, u: bpb.SetSystemLimitsRequest()),
    "BudgetService.ListAuditLog": (U1, lambda w, u: bpb.ListAuditLogRequest()),
    "BudgetService.ReconcileLedger": (U1, lambda w, u: bpb.ReconcileLedgerRequest()),
    "BudgetService.Admit": (U1, lambda w, u: bpb.AdmitRequest(user_id=u)),
    "BudgetService.BlockUser": (
        "blocked",
        lambda w, u: bpb.BlockUserRequest(user_id=u, reason="matrix"),
    ),
    "BudgetService.UnblockUser": ("unblocked", unblock),
    "BudgetService.ListBlocks": (U1, lambda w, u: bpb.ListBlocksRequest()),
    "BudgetService.SetUserRateLimits": (
        "rated",
        lambda w, u: bpb.SetUserRateLimitsRequest(user_id=u),
    ),
    "BudgetService.AnalyzeCostOptimization": (
        U1,
        lambda w, u: opb.AnalyzeCostOptimizationRequest(user_id=u, **RANGE),
    ),
    "BudgetService.GrantCredit": (
        "credited",
        lambda w, u: tpb.GrantCreditRequest(
            user_id=u, window=tpb.LIMIT_WINDOW_USER_DAILY, amount_micros=1_000, reason="matrix"
        ),
    ),
    "BudgetService.ListUsersNearLimits": (
        U1,
        lambda w, u: tpb.ListUsersNearLimitsRequest(min_share_basis_points=8_000),
    ),
    "BudgetService.ExportUsage": (U1, lambda w, u: tpb.ExportUsageRequest(user_id=u)),
    "BudgetService.SimulateLimits": (U1, lambda w, u: tpb.SimulateLimitsRequest(**RANGE)),
    "BudgetService.GetSystemMetrics": (
        U1,
        lambda w, u: mpb.GetSystemMetricsRequest(period=mpb.METRICS_PERIOD_DAY),
    ),
    "BudgetService.ListTopUsers": (
        U1,
        lambda w, u: mpb.ListTopUsersRequest(period=mpb.TOP_USERS_PERIOD_DAY),
    ),
    "BudgetService.ListAlerts": (U1, lambda w, u: apb.ListAlertsRequest(user_id=u)),
    "BudgetService.WatchAlerts": (U1, lambda w, u: apb.WatchAlertsRequest(user_id=u)),
    "BudgetService.SilenceAlerts": (
        "silenced",
        lambda w, u: apb.SilenceAlertsRequest(user_id=u, rule="burn_rate"),
    ),
    "BudgetService.UnsilenceAlerts": ("unsilenced", unsilence),
    "ImageService.GenerateImage": (
        U1,
        lambda w, u: ipb.GenerateImageRequest(user_id=u, recipe=SOUP),
    ),
    "ImageService.QuoteImage": (
        U1,
        lambda w, u: ipb.QuoteImageRequest(
            request=ipb.GenerateImageRequest(user_id=u, recipe=SOUP)
        ),
    ),
    "ImageService.GetImage": (
        U1,
        lambda w, u: ipb.GetImageRequest(image_id=w.cached_image(u)),
    ),
    "ImageService.StreamImage": (
        U1,
        lambda w, u: ipb.StreamImageRequest(image_id=w.cached_image(u)),
    ),
    "ImageService.GetCacheStats": (U1, lambda w, u: ipb.GetCacheStatsRequest()),
    "ImageService.PurgeExpiredCache": (U1, lambda w, u: ipb.PurgeExpiredCacheRequest()),
    "ImageService.InvalidateCachedImage": (U1, invalidate),
}


# ---- the cells ----------------------------------------------------------------------


def call_code(world: World, rpc: str, request: Message, metadata: tuple) -> grpc.StatusCode:
    """The code a call ends with; a stream is read to its end (WatchAlerts
    until its deadline)."""
    service, method = rpc.split(".")
    stub = world.pair.budget.stub if service == "BudgetService" else world.pair.image
    descriptor = DESCRIPTORS[service].methods_by_name[method]
    timeout = WATCH_DEADLINE_SECONDS if method == "WatchAlerts" else 30
    try:
        answer = getattr(stub, method)(request, metadata=metadata, timeout=timeout)
        if descriptor.server_streaming:
            for _ in answer:
                pass
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("rpc", sorted(MATRIX))
def test_access_matrix_row(world: World, rpc: str) -> None:
    subject, build = REQUESTS[rpc]
    expected = {column: CODES[cell] for column, cell in MATRIX[rpc].items()}
    got = {
        column: call_code(world, rpc, build(world, subject), caller_metadata(column, subject))
        for column in COLUMNS
    }
    wrong = {
        column: f"expected {expected[column].name}, got {got[column].name}"
        for column in COLUMNS
        if got[column] != expected[column]
    }
    assert wrong == {}, rpc


def test_the_refused_cells_left_the_ledger_whole(world: World) -> None:
    """Whatever order the rows ran in, the money adds up: what allowed cells
    held, committed and released reconciles, and nothing a refused cell was
    given to act on was charged behind the refusal."""
    for rpc in ("BudgetService.CommitReservation", "BudgetService.ReleaseReservation"):
        subject, build = REQUESTS[rpc]
        request = build(world, subject)
        for column in COLUMNS:
            if MATRIX[rpc][column] != "OK":
                call_code(world, rpc, request, caller_metadata(column, subject))
        held = world.pair.budget.stub.ReleaseReservation(
            bpb.ReleaseReservationRequest(reservation_id=request.reservation_id),
            metadata=world.service,
        )
        assert held.reservation.state == bpb.RESERVATION_STATE_RELEASED, rpc
    report = world.pair.budget.stub.ReconcileLedger(
        bpb.ReconcileLedgerRequest(), metadata=world.admin
    )
    assert list(report.differences) == []


def test_the_matrix_table_is_read_as_written() -> None:
    """The parser cannot lose a cell: one code a column, every RPC once."""
    assert len(MATRIX) == len(MATRIX_TEXT.strip().splitlines()) - len(DESCRIPTORS)
    assert MATRIX["BudgetService.GetLimits"]["user_other"] == "DENIED"
    assert MATRIX["ImageService.GetImage"]["user_other"] == "OK"
    with pytest.raises(AssertionError):
        parse_matrix("BudgetService " + " ".join(COLUMNS) + "\nGetLimits OK OK")
    assert {cells["none"] for cells in MATRIX.values()} == {"UNAUTH"}
