"""Abuse triggers that count a streak: content-policy refusals and rejected
input (released or recorded failures), and rate-limit refusals a client
ignores (Admit). Each blocks at exactly its threshold, not before; a success
ends a streak; the window restarts it; the block is automatic, audited, seen
in GetLimits and ListBlocks, refuses Admit, expires by the clock, and can be
lifted. Through the real server on both databases, with a manual clock."""

from __future__ import annotations

from datetime import timedelta

import grpc
from recipeimage.budget.v1 import admission_pb2 as apb
from recipeimage.budget.v1 import budget_service_pb2 as pb

from services.budget.domain.admission import SystemRates, TierRates
from services.common.timestamps import to_proto
from tests.budget.abuse_support import (
    CONTENT_POLICY,
    INPUT_REJECTED,
    TIMEOUT,
    audit,
    block_of,
    blocks,
    recorded,
    released,
    watching,
)
from tests.budget.admission_support import admit, admit_refusal
from tests.support.budget_server import admission, running_budget

SECOND = timedelta(seconds=1)


def test_five_content_policy_refusals_in_a_row_block_the_user_for_15_minutes(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(content_policy_streak=(5, 3600))
    with running_budget(database_url, authenticator, clock=clock, abuse=abuse) as budget:
        for _ in range(4):
            released(budget, tokens, CONTENT_POLICY)
            clock.advance(SECOND)
        admit(budget, tokens)
        assert block_of(budget, tokens) is None
        released(budget, tokens, CONTENT_POLICY)  # the fifth
        crossed = clock.now()

        refusal = admit_refusal(budget, tokens)
        assert refusal.code == grpc.StatusCode.PERMISSION_DENIED
        assert refusal.reason == "USER_BLOCKED"
        assert refusal.metadata["block_source"] == "automatic"
        assert refusal.retry_after == timedelta(minutes=15)
        admit(budget, tokens, "u2")  # only u1 is blocked

        mine = block_of(budget, tokens)
        assert mine is not None
        assert (mine.source, mine.created_by, mine.level) == (
            apb.BLOCK_SOURCE_AUTOMATIC,
            "content_policy_streak",
            1,
        )
        assert mine.create_time == to_proto(crossed)
        assert mine.expire_time == to_proto(crossed + timedelta(minutes=15))
        assert "5 content-policy refusals in a row" in mine.reason
        assert blocks(budget, tokens) == [mine]

        [entry] = audit(budget, tokens)
        assert (entry.actor, entry.actor_role) == ("content_policy_streak", "system")
        assert entry.action == pb.AUDIT_ACTION_BLOCK_USER
        assert entry.after.block == mine
        assert not entry.before.HasField("block")

        clock.advance(timedelta(minutes=15) - timedelta(microseconds=1))
        assert admit_refusal(budget, tokens).reason == "USER_BLOCKED"
        clock.advance(timedelta(microseconds=1))
        admit(budget, tokens)  # expired by the clock
        assert block_of(budget, tokens) is None and blocks(budget, tokens) == []


def test_a_success_ends_the_streak_and_other_failures_neither_count_nor_end_it(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(content_policy_streak=(5, 3600), input_rejected_streak=(5, 3600))
    with running_budget(database_url, authenticator, clock=clock, abuse=abuse) as budget:
        for _ in range(4):
            recorded(budget, tokens, CONTENT_POLICY)
            clock.advance(SECOND)
        recorded(budget, tokens)  # a cache hit: an image was served
        clock.advance(SECOND)
        for error in [CONTENT_POLICY] * 2 + [TIMEOUT, INPUT_REJECTED] + [CONTENT_POLICY] * 2:
            recorded(budget, tokens, error)
            clock.advance(SECOND)
        assert block_of(budget, tokens) is None  # 4 since the success
        # A retry of a recorded attempt is no new attempt: not counted again.
        again = recorded(budget, tokens, CONTENT_POLICY, request_id="same")
        assert not again.duplicate
        assert recorded(budget, tokens, CONTENT_POLICY, request_id="same").duplicate
        blocked = block_of(budget, tokens)
        assert blocked is not None and blocked.created_by == "content_policy_streak"
        # The other user's and the other trigger's streaks are their own.
        assert block_of(budget, tokens, "u2") is None


def test_rejected_input_blocks_at_five_within_the_window_only(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(input_rejected_streak=(5, 3600))
    with running_budget(database_url, authenticator, clock=clock, abuse=abuse) as budget:
        for _ in range(4):
            released(budget, tokens, INPUT_REJECTED)
        # The fifth comes a whole window after the first: a new streak.
        clock.advance(timedelta(hours=1))
        released(budget, tokens, INPUT_REJECTED)
        assert block_of(budget, tokens) is None
        for _ in range(3):
            clock.advance(timedelta(minutes=14))
            released(budget, tokens, INPUT_REJECTED)
        assert block_of(budget, tokens) is None  # 4 in the new streak
        clock.advance(timedelta(minutes=17) - SECOND)  # the fifth, 59:59 after its first
        released(budget, tokens, INPUT_REJECTED)
        blocked = block_of(budget, tokens)
        assert blocked is not None
        assert (blocked.created_by, blocked.level) == ("input_rejected_streak", 1)
        assert [e.actor for e in audit(budget, tokens)] == ["input_rejected_streak"]


def test_a_disabled_trigger_counts_nothing(database_url, authenticator, clock, tokens) -> None:
    with running_budget(database_url, authenticator, clock=clock) as budget:  # all off
        for _ in range(10):
            released(budget, tokens, CONTENT_POLICY)
            recorded(budget, tokens, INPUT_REJECTED)
        admit(budget, tokens)
        assert blocks(budget, tokens) == []


# One call every 3 s, 2 at once.
FREE = TierRates(
    requests_per_minute=20, request_burst=2, generations_per_hour=0, max_concurrent_generations=0
)


def test_ignored_rate_limit_refusals_block_at_the_threshold_and_consume_no_quota(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(ignored_rate_limits=(6, 60))
    rules = admission(free=FREE)
    with running_budget(
        database_url, authenticator, clock=clock, admission=rules, abuse=abuse
    ) as budget:
        admit(budget, tokens)
        admit(budget, tokens)
        for _ in range(5):
            # Counting each refusal moves no rate state: the wait stays exact.
            assert admit_refusal(budget, tokens).retry_after == timedelta(seconds=3)
        clock.advance(timedelta(seconds=3))
        admit(budget, tokens)  # admitted exactly when told: nothing was consumed
        assert block_of(budget, tokens) is None
        sixth = admit_refusal(budget, tokens)  # the sixth refusal within a minute
        assert (sixth.reason, sixth.retry_after) == ("RATE_LIMITED", timedelta(seconds=3))
        refusal = admit_refusal(budget, tokens)
        assert (refusal.reason, refusal.metadata["block_source"]) == ("USER_BLOCKED", "automatic")
        blocked = block_of(budget, tokens)
        assert blocked is not None
        assert (blocked.created_by, blocked.level) == ("ignored_rate_limits", 1)
        assert blocked.expire_time == to_proto(clock.now() + timedelta(minutes=15))
        # Refusals while blocked are USER_BLOCKED: they count toward nothing.
        for _ in range(10):
            admit_refusal(budget, tokens)
        assert len(audit(budget, tokens)) == 1


def test_rate_limit_refusals_count_within_the_window_only(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(ignored_rate_limits=(3, 60))
    with running_budget(
        database_url, authenticator, clock=clock, admission=admission(free=FREE), abuse=abuse
    ) as budget:
        admit(budget, tokens)
        admit(budget, tokens)
        assert admit_refusal(budget, tokens).reason == "RATE_LIMITED"
        clock.advance(SECOND)
        assert admit_refusal(budget, tokens).reason == "RATE_LIMITED"
        clock.advance(timedelta(seconds=59))  # the first refusal is a minute old
        admit(budget, tokens)
        admit(budget, tokens)
        assert admit_refusal(budget, tokens).reason == "RATE_LIMITED"
        assert admit_refusal(budget, tokens).reason == "RATE_LIMITED"
        assert block_of(budget, tokens) is None
        assert admit_refusal(budget, tokens).reason == "RATE_LIMITED"  # 3 in a minute
        assert admit_refusal(budget, tokens).reason == "USER_BLOCKED"


def test_refusals_by_the_system_rate_do_not_count(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(ignored_rate_limits=(3, 60))
    system = SystemRates(
        requests_per_second=1,
        request_burst=1,
        generations_per_minute=0,
        max_concurrent_generations=0,
    )
    rules = admission(free=FREE, system=system)
    with running_budget(
        database_url, authenticator, clock=clock, admission=rules, abuse=abuse
    ) as budget:
        admit(budget, tokens)
        for _ in range(10):  # every user is refused: not this user's doing
            assert admit_refusal(budget, tokens).reason == "SYSTEM_RATE_LIMITED"
        clock.advance(SECOND)
        admit(budget, tokens)
        assert blocks(budget, tokens) == []


def test_an_automatic_block_is_lifted_by_unblock_user(
    database_url, authenticator, clock, tokens
) -> None:
    abuse = watching(content_policy_streak=(2, 3600))
    with running_budget(database_url, authenticator, clock=clock, abuse=abuse) as budget:
        released(budget, tokens, CONTENT_POLICY)
        clock.advance(SECOND)
        released(budget, tokens, CONTENT_POLICY)
        assert admit_refusal(budget, tokens).reason == "USER_BLOCKED"
        lifted = budget.stub.UnblockUser(
            pb.UnblockUserRequest(user_id="u1"), metadata=tokens.admin()
        ).block
        assert lifted.source == apb.BLOCK_SOURCE_AUTOMATIC
        admit(budget, tokens)
        # The streak started over at the block: one more failure is not two.
        clock.advance(SECOND)
        released(budget, tokens, CONTENT_POLICY)
        admit(budget, tokens)
        assert [e.action for e in audit(budget, tokens)] == [
            pb.AUDIT_ACTION_UNBLOCK_USER,
            pb.AUDIT_ACTION_BLOCK_USER,
        ]
