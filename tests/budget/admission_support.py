"""Helpers of the admission tests: calls, and the details of their refusals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.common.status import rich_details
from tests.support.budget_server import RunningBudget


@dataclass(frozen=True)
class Refusal:
    code: grpc.StatusCode
    reason: str
    metadata: dict[str, str]
    retry_after: timedelta | None


def refusal_of(error: grpc.RpcError) -> Refusal:
    details = rich_details(error)
    info = next(d for d in details if isinstance(d, error_details_pb2.ErrorInfo))
    retry = next((d for d in details if isinstance(d, error_details_pb2.RetryInfo)), None)
    return Refusal(
        error.code(),
        info.reason,
        dict(info.metadata),
        retry.retry_delay.ToTimedelta() if retry else None,
    )


def refused(call, *args, **kwargs) -> Refusal:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call(*args, **kwargs)
    return refusal_of(raised.value)


def admit(budget: RunningBudget, tokens, user: str = "u1") -> pb.AdmitResponse:  # type: ignore[no-untyped-def]
    return budget.stub.Admit(pb.AdmitRequest(user_id=user), metadata=tokens.service())


def admit_refusal(budget: RunningBudget, tokens, user: str = "u1") -> Refusal:  # type: ignore[no-untyped-def]
    return refused(budget.stub.Admit, pb.AdmitRequest(user_id=user), metadata=tokens.service())


def reserve(  # type: ignore[no-untyped-def]
    budget: RunningBudget, tokens, key: str, user: str = "u1", amount: int = 10_000
) -> pb.ReserveBudgetResponse:
    return budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id=user, amount_micros=amount, idempotency_key=key),
        metadata=tokens.service(),
    )


def reserve_refusal(  # type: ignore[no-untyped-def]
    budget: RunningBudget, tokens, key: str, user: str = "u1", amount: int = 10_000
) -> Refusal:
    return refused(
        budget.stub.ReserveBudget,
        pb.ReserveBudgetRequest(user_id=user, amount_micros=amount, idempotency_key=key),
        metadata=tokens.service(),
    )


def rule_of(limits: pb.GetLimitsResponse, kind: int):  # type: ignore[no-untyped-def]
    return next(rule for rule in limits.rate_rules if rule.kind == kind)
