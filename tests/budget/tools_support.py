"""Helpers of the management tools' tests: calls, refusals and their
BadRequest fields, and the access rule every tool shares (admin only)."""

from __future__ import annotations

from datetime import datetime

import grpc
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.budget.v1 import management_tools_pb2 as tpb

from services.common.status import rich_details
from services.common.timestamps import to_proto


def bad_fields(call) -> list[str]:  # type: ignore[no-untyped-def]
    """The BadRequest fields of an INVALID_ARGUMENT the call raises."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    bad = next(d for d in rich_details(raised.value) if d.DESCRIPTOR.name == "BadRequest")
    return sorted(v.field for v in bad.field_violations)


def refusal(call) -> tuple[grpc.StatusCode, dict]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), {type(d).__name__: d for d in rich_details(raised.value)}


def only_admins(tokens, call) -> None:  # type: ignore[no-untyped-def]
    """call(metadata) is refused for a user (even for itself) and a service,
    and answered for an admin."""
    for metadata in (tokens.user("u1"), tokens.service()):
        with pytest.raises(grpc.RpcError) as raised:
            call(metadata)
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    call(tokens.admin())


def reserve(budget, tokens, amount: int, key: str, user: str = "u1"):  # type: ignore[no-untyped-def]
    return budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id=user, amount_micros=amount, idempotency_key=key),
        metadata=tokens.service(),
    )


def commit(budget, tokens, reservation_id: str, cost: int):  # type: ignore[no-untyped-def]
    return budget.stub.CommitReservation(
        pb.CommitReservationRequest(reservation_id=reservation_id, actual_cost_micros=cost),
        metadata=tokens.service(),
    )


def spend(budget, tokens, amount: int, key: str, user: str = "u1") -> None:  # type: ignore[no-untyped-def]
    held = reserve(budget, tokens, amount, key, user).reservation
    commit(budget, tokens, held.reservation_id, amount)


def grant(  # type: ignore[no-untyped-def]
    budget,
    tokens,
    amount: int,
    window: int = tpb.LIMIT_WINDOW_USER_DAILY,
    user: str = "u1",
    reason: str = "support ticket 42",
    expires: datetime | None = None,
) -> tpb.Credit:
    request = tpb.GrantCreditRequest(
        user_id=user, window=window, amount_micros=amount, reason=reason
    )
    if expires is not None:
        request.expire_time.CopyFrom(to_proto(expires))
    return budget.stub.GrantCredit(request, metadata=tokens.admin()).credit


def windows(budget, tokens, user: str = "u1") -> dict[int, pb.Window]:  # type: ignore[no-untyped-def]
    response = budget.stub.GetLimits(pb.GetLimitsRequest(user_id=user), metadata=tokens.admin())
    return {window.kind: window for window in response.windows}
