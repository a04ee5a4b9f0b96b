"""Helpers of the abuse tests: settings with some triggers on, attempts that
end as the triggers count them, and what a test checks afterwards."""

from __future__ import annotations

import itertools

from recipeimage.budget.v1 import admission_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.domain.abuse import NO_ABUSE, AbuseSettings, Trigger, TriggerRule
from tests.support.budget_server import RunningBudget

_keys = itertools.count()
CONTENT_POLICY = "CONTENT_POLICY_VIOLATION: the prompt was refused by the safety system"
INPUT_REJECTED = "INPUT_REJECTED: the provider refused the prompt as invalid"
TIMEOUT = "PROVIDER_TIMEOUT: the provider did not answer in time"


def watching(
    durations: tuple[int, ...] = (900, 3600, 86400),
    escalation_days: int = 7,
    **rules: tuple[int, int],
) -> AbuseSettings:
    """Abuse settings with the named triggers on: content_policy_streak=(5, 3600)."""
    enabled = {Trigger(name): TriggerRule(*rule) for name, rule in rules.items()}
    return AbuseSettings(NO_ABUSE.rules | enabled, durations, escalation_days)


def _key(prefix: str) -> str:
    return f"{prefix}-{next(_keys)}"


def released(budget: RunningBudget, tokens, error: str, user: str = "u1") -> None:  # type: ignore[no-untyped-def]
    """A generation that failed: reserve, then release with the error."""
    key = _key("release")
    held = budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id=user, amount_micros=10_000, idempotency_key=key),
        metadata=tokens.service(),
    ).reservation
    budget.stub.ReleaseReservation(
        pb.ReleaseReservationRequest(
            reservation_id=held.reservation_id,
            usage=pb.UsageRecord(error_message=error, outcome=pb.USAGE_OUTCOME_FAILED),
        ),
        metadata=tokens.service(),
    )


def recorded(  # type: ignore[no-untyped-def]
    budget: RunningBudget, tokens, error: str = "", user: str = "u1", request_id: str = ""
) -> pb.RecordUsageResponse:
    """An attempt without a reservation: a failure with the error, or (no
    error) a cache hit, which served an image."""
    usage = pb.UsageRecord(
        request_id=request_id or _key("record"),
        user_id=user,
        error_message=error,
        outcome=pb.USAGE_OUTCOME_FAILED if error else pb.USAGE_OUTCOME_CACHE_HIT_EXACT,
        success=not error,
    )
    return budget.stub.RecordUsage(pb.RecordUsageRequest(usage=usage), metadata=tokens.service())


def generated(budget: RunningBudget, tokens, prompt: str, user: str = "u1") -> None:  # type: ignore[no-untyped-def]
    """A generation that succeeded with this prompt: reserve, then commit."""
    key = _key("generate")
    held = budget.stub.ReserveBudget(
        pb.ReserveBudgetRequest(user_id=user, amount_micros=10_000, idempotency_key=key),
        metadata=tokens.service(),
    ).reservation
    budget.stub.CommitReservation(
        pb.CommitReservationRequest(
            reservation_id=held.reservation_id,
            actual_cost_micros=10_000,
            usage=pb.UsageRecord(prompt=prompt, outcome=pb.USAGE_OUTCOME_GENERATED, success=True),
        ),
        metadata=tokens.service(),
    )


def block_of(budget: RunningBudget, tokens, user: str = "u1") -> apb.Block | None:  # type: ignore[no-untyped-def]
    """The user's block in force, as the user sees it in GetLimits."""
    limits = budget.stub.GetLimits(pb.GetLimitsRequest(), metadata=tokens.user(user))
    return limits.block if limits.HasField("block") else None


def blocks(budget: RunningBudget, tokens) -> list[apb.Block]:  # type: ignore[no-untyped-def]
    """Every block in force (ListBlocks)."""
    return list(budget.stub.ListBlocks(pb.ListBlocksRequest(), metadata=tokens.admin()).blocks)


def audit(budget: RunningBudget, tokens, user: str = "u1") -> list[pb.AuditEntry]:  # type: ignore[no-untyped-def]
    request = pb.ListAuditLogRequest(target_user_id=user)
    return list(budget.stub.ListAuditLog(request, metadata=tokens.admin()).entries)
