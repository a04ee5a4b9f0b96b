"""Blocks (BlockUser, UnblockUser, ListBlocks) and rate overrides
(SetUserRateLimits): admin only, audited; Admit refuses a blocked user with
the block's details; a user sees its own block; a block expires."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from recipeimage.budget.v1 import admission_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.domain.admission import TierRates
from services.common.timestamps import to_proto
from tests.budget.admission_support import (
    admit,
    admit_refusal,
    reserve,
    reserve_refusal,
    rule_of,
)
from tests.budget.conftest import T0
from tests.support.budget_server import admission, running_budget

FREE = TierRates(
    requests_per_minute=20, request_burst=10, generations_per_hour=0, max_concurrent_generations=3
)


def block(budget, tokens, user: str, reason: str, expires=None):  # type: ignore[no-untyped-def]
    request = pb.BlockUserRequest(user_id=user, reason=reason)
    if expires is not None:
        request.expire_time.CopyFrom(to_proto(expires))
    return budget.stub.BlockUser(request, metadata=tokens.admin()).block


def audit(budget, tokens, user: str) -> list[pb.AuditEntry]:  # type: ignore[no-untyped-def]
    return list(
        budget.stub.ListAuditLog(
            pb.ListAuditLogRequest(target_user_id=user), metadata=tokens.admin()
        ).entries
    )


def test_a_block_refuses_admit_with_its_details_until_it_expires(budget, tokens, clock) -> None:
    admit(budget, tokens)
    blocked = block(budget, tokens, "u1", "card fraud", T0 + timedelta(hours=1))
    assert (blocked.source, blocked.created_by) == (apb.BLOCK_SOURCE_ADMIN, "ops")
    refusal = admit_refusal(budget, tokens)
    assert refusal.code == grpc.StatusCode.PERMISSION_DENIED
    assert refusal.reason == "USER_BLOCKED"
    assert refusal.metadata == {
        "block_reason": "card fraud",
        "block_source": "admin",
        "expire_time": (T0 + timedelta(hours=1)).isoformat(),
    }
    assert refusal.retry_after == timedelta(hours=1)
    admit(budget, tokens, "u2")  # only u1 is blocked

    # The user sees its own block, and cannot lift it.
    mine = budget.stub.GetLimits(pb.GetLimitsRequest(), metadata=tokens.user("u1"))
    assert mine.block.reason == "card fraud"
    assert mine.block.expire_time == to_proto(T0 + timedelta(hours=1))
    with pytest.raises(grpc.RpcError) as raised:
        budget.stub.UnblockUser(pb.UnblockUserRequest(user_id="u1"), metadata=tokens.user("u1"))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED

    [entry] = audit(budget, tokens, "u1")
    assert entry.action == pb.AUDIT_ACTION_BLOCK_USER
    assert not entry.before.HasField("block")
    assert entry.after.block.reason == "card fraud"

    clock.advance(timedelta(hours=1))
    admit(budget, tokens)
    assert not budget.stub.GetLimits(pb.GetLimitsRequest(), metadata=tokens.user("u1")).HasField(
        "block"
    )
    listed = budget.stub.ListBlocks(pb.ListBlocksRequest(), metadata=tokens.admin())
    assert list(listed.blocks) == []


def test_unblock_lifts_the_block_once_and_is_audited(budget, tokens) -> None:
    block(budget, tokens, "u1", "spam")
    assert admit_refusal(budget, tokens).retry_after is None  # no end: no RetryInfo
    lifted = budget.stub.UnblockUser(pb.UnblockUserRequest(user_id="u1"), metadata=tokens.admin())
    assert lifted.block.reason == "spam"
    admit(budget, tokens)
    with pytest.raises(grpc.RpcError) as raised:
        budget.stub.UnblockUser(pb.UnblockUserRequest(user_id="u1"), metadata=tokens.admin())
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    entries = audit(budget, tokens, "u1")
    assert [e.action for e in entries] == [
        pb.AUDIT_ACTION_UNBLOCK_USER,
        pb.AUDIT_ACTION_BLOCK_USER,
    ]
    assert entries[0].before.block.reason == "spam"
    assert not entries[0].after.HasField("block")


def test_a_new_block_replaces_the_one_in_force(budget, tokens) -> None:
    block(budget, tokens, "u1", "first")
    block(budget, tokens, "u1", "second")
    assert admit_refusal(budget, tokens).metadata["block_reason"] == "second"
    listed = budget.stub.ListBlocks(pb.ListBlocksRequest(), metadata=tokens.admin())
    assert [b.reason for b in listed.blocks] == ["second"]
    assert audit(budget, tokens, "u1")[0].before.block.reason == "first"


def test_block_user_validates_its_request(budget, tokens, clock) -> None:
    for request in (
        pb.BlockUserRequest(user_id="u1"),
        pb.BlockUserRequest(user_id="u1", reason="   "),
        pb.BlockUserRequest(user_id="u1", reason="x", expire_time=to_proto(clock.now())),
        pb.BlockUserRequest(reason="x"),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            budget.stub.BlockUser(request, metadata=tokens.admin())
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
    admit(budget, tokens)


def test_list_blocks_pages_newest_first(budget, tokens, clock) -> None:
    for number in range(5):
        block(budget, tokens, f"user-{number}", f"reason {number}")
        clock.advance(timedelta(seconds=1))
    budget.stub.UnblockUser(pb.UnblockUserRequest(user_id="user-3"), metadata=tokens.admin())
    seen, token = [], ""
    while True:
        page = budget.stub.ListBlocks(
            pb.ListBlocksRequest(page_size=2, page_token=token), metadata=tokens.admin()
        )
        seen.append([b.user_id for b in page.blocks])
        token = page.next_page_token
        if not token:
            break
    assert [user for page in seen for user in page] == ["user-4", "user-2", "user-1", "user-0"]
    assert len(seen[0]) == 2
    with pytest.raises(grpc.RpcError) as raised:
        budget.stub.ListBlocks(pb.ListBlocksRequest(page_token="nonsense"), metadata=tokens.admin())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_set_user_rate_limits_overrides_the_tier_and_is_audited(
    database_url, authenticator, clock, tokens
) -> None:
    with running_budget(
        database_url, authenticator, clock=clock, admission=admission(free=FREE)
    ) as budget:
        overrides = apb.RateLimitValues(request_burst=2, max_concurrent_generations=1)
        answer = budget.stub.SetUserRateLimits(
            pb.SetUserRateLimitsRequest(user_id="u1", overrides=overrides),
            metadata=tokens.admin(),
        )
        assert answer.overrides == overrides
        admit(budget, tokens)
        admit(budget, tokens)
        refusal = admit_refusal(budget, tokens)
        assert (refusal.metadata["burst"], refusal.metadata["source"]) == ("2", "override")
        for _ in range(10):
            admit(budget, tokens, "u2")  # the tier's burst for everyone else

        reserve(budget, tokens, "a")
        assert reserve_refusal(budget, tokens, "b").metadata["limit"] == "1"
        limits = budget.stub.GetLimits(pb.GetLimitsRequest(), metadata=tokens.user("u1"))
        assert limits.rate_overrides == overrides
        assert (limits.concurrency.limit, limits.concurrency.source) == (1, "override")
        assert rule_of(limits, apb.RATE_RULE_KIND_USER_REQUESTS).burst == 2

        [entry] = audit(budget, tokens, "u1")
        assert entry.action == pb.AUDIT_ACTION_SET_USER_RATE_LIMITS
        assert entry.after.rate_overrides == overrides
        assert entry.before.rate_overrides == apb.RateLimitValues()

        # Cleared: back to the tier's values.
        budget.stub.SetUserRateLimits(
            pb.SetUserRateLimitsRequest(user_id="u1"), metadata=tokens.admin()
        )
        reserve(budget, tokens, "b")
        with pytest.raises(grpc.RpcError) as raised:
            budget.stub.SetUserRateLimits(
                pb.SetUserRateLimitsRequest(
                    user_id="u1", overrides=apb.RateLimitValues(requests_per_minute=0)
                ),
                metadata=tokens.admin(),
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
