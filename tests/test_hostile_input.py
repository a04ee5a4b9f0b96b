"""Issue 7's cases, each as an attacker would send it, on both databases:
refused with INVALID_ARGUMENT (or UNAUTHENTICATED) naming what is wrong, and
nothing reserved, generated, charged or recorded."""

from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import timestamp_pb2
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as image_pb
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.common.auth import Role
from services.common.bounds import MAX_MONEY_MICROS
from services.common.db import create_db_engine
from services.common.status import rich_details
from tests.support.budget_server import ManualClock
from tests.support.image_server import RunningPair, running_pair

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
USER_WINDOWS = (budget_pb.WINDOW_KIND_USER_DAILY, budget_pb.WINDOW_KIND_USER_MONTHLY)
SOUP = image_pb.Recipe(recipe_id="r-soup", title="Tomato soup", ingredients=["4 tomatoes"])


@pytest.fixture
def pair(database_url: str, authenticator) -> Iterator[RunningPair]:
    with running_pair(database_url, authenticator, clock=ManualClock(T0)) as running:
        yield running


def refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, set[str]]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    details = rich_details(raised.value)
    bad = next((d for d in details if d.DESCRIPTOR.name == "BadRequest"), None)
    fields = {v.field for v in bad.field_violations} if bad is not None else set()
    return raised.value.code(), fields


def ledger_is_empty(pair: RunningPair, tokens) -> None:
    """No usage record, no reservation left, nothing spent, and it reconciles."""
    budget = pair.budget.stub
    page = budget.ListUsage(budget_pb.ListUsageRequest(user_id="u1"), metadata=tokens.admin())
    assert list(page.usage_records) == []
    limits = budget.GetLimits(budget_pb.GetLimitsRequest(user_id="u1"), metadata=tokens.admin())
    user_windows = [w for w in limits.windows if w.kind in USER_WINDOWS]
    assert all(w.spent_micros == 0 and w.reserved_micros == 0 for w in user_windows)
    check = budget.ReconcileLedger(budget_pb.ReconcileLedgerRequest(), metadata=tokens.admin())
    assert check.consistent, check.differences


def test_a_nul_in_a_recipe_id_or_prompt_gets_no_image(pair: RunningPair, tokens) -> None:
    for request, field in (
        (
            image_pb.GenerateImageRequest(recipe=image_pb.Recipe(recipe_id="x\x00", title="Soup")),
            "recipe.recipe_id",
        ),
        (image_pb.GenerateImageRequest(recipe=SOUP, prompt="a photo of soup\x00"), "prompt"),
        (image_pb.GenerateImageRequest(recipe=SOUP, request_id="r1\x00"), "request_id"),
    ):
        code, fields = refused(
            lambda request=request: pair.image.GenerateImage(request, metadata=tokens.user("u1"))
        )
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {field})
    ledger_is_empty(pair, tokens)


def test_a_nul_on_the_cache_hit_path_is_refused_not_unavailable(pair: RunningPair, tokens) -> None:
    pair.image.GenerateImage(image_pb.GenerateImageRequest(recipe=SOUP), metadata=tokens.user("u2"))
    hit = image_pb.Recipe()
    hit.CopyFrom(SOUP)
    hit.recipe_id = "x\x00"
    code, fields = refused(
        lambda: pair.image.GenerateImage(
            image_pb.GenerateImageRequest(recipe=hit), metadata=tokens.user("u1")
        )
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"recipe.recipe_id"})
    ledger_is_empty(pair, tokens)


def test_a_nul_in_any_budget_user_id_is_invalid_argument(pair: RunningPair, tokens) -> None:
    budget = pair.budget.stub
    bob = "bob\x00"
    usage = budget_pb.UsageRecord(request_id="r1", user_id=bob, outcome=1)
    calls = {
        "GetLimits": lambda: budget.GetLimits(
            budget_pb.GetLimitsRequest(user_id=bob), metadata=tokens.admin()
        ),
        "CheckBudget": lambda: budget.CheckBudget(
            budget_pb.CheckBudgetRequest(user_id=bob, amount_micros=1), metadata=tokens.service()
        ),
        "ReserveBudget": lambda: budget.ReserveBudget(
            budget_pb.ReserveBudgetRequest(user_id=bob, amount_micros=1, idempotency_key="k"),
            metadata=tokens.service(),
        ),
        "ReleaseReservation": lambda: budget.ReleaseReservation(
            budget_pb.ReleaseReservationRequest(reservation_id="x\x00"), metadata=tokens.service()
        ),
        "RecordUsage": lambda: budget.RecordUsage(
            budget_pb.RecordUsageRequest(usage=usage), metadata=tokens.service()
        ),
        "SetUserTier": lambda: budget.SetUserTier(
            budget_pb.SetUserTierRequest(user_id=bob, tier=budget_pb.USER_TIER_PRO),
            metadata=tokens.admin(),
        ),
        "SetUserLimits": lambda: budget.SetUserLimits(
            budget_pb.SetUserLimitsRequest(user_id=bob), metadata=tokens.admin()
        ),
        "SetSpendCap": lambda: budget.SetSpendCap(
            budget_pb.SetSpendCapRequest(user_id=bob), metadata=tokens.admin()
        ),
    }
    for name, call in calls.items():
        code, fields = refused(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, name
        assert fields <= {"user_id", "usage.user_id", "reservation_id"} and fields, name


def test_a_token_whose_subject_holds_a_nul_is_unauthenticated(pair: RunningPair, tokens) -> None:
    metadata = tokens.metadata(Role.USER, "bob\x00")
    code, _ = refused(
        lambda: pair.budget.stub.GetLimits(budget_pb.GetLimitsRequest(), metadata=metadata)
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_money_cannot_overflow_the_windows(pair: RunningPair, tokens) -> None:
    budget = pair.budget.stub
    held = budget.ReserveBudget(
        budget_pb.ReserveBudgetRequest(user_id="u1", amount_micros=1000, idempotency_key="k1"),
        metadata=tokens.service(),
    )
    for _ in range(2):
        code, fields = refused(
            lambda: budget.CommitReservation(
                budget_pb.CommitReservationRequest(
                    reservation_id=held.reservation.reservation_id, actual_cost_micros=2**62
                ),
                metadata=tokens.service(),
            )
        )
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"actual_cost_micros"})
        code, fields = refused(
            lambda: budget.RecordUsage(
                budget_pb.RecordUsageRequest(
                    usage=budget_pb.UsageRecord(
                        request_id="r-hit", user_id="u1", cost_saved_micros=2**62, outcome=2
                    )
                ),
                metadata=tokens.service(),
            )
        )
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"usage.cost_saved_micros"})
    code, fields = refused(
        lambda: budget.SetSystemLimits(
            budget_pb.SetSystemLimitsRequest(daily_limit_micros=2**63 - 1), metadata=tokens.admin()
        )
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"daily_limit_micros"})
    # Everything still answers, and the hold is intact.
    limits = budget.GetLimits(budget_pb.GetLimitsRequest(user_id="u1"), metadata=tokens.admin())
    assert {w.reserved_micros for w in limits.windows} == {1000}
    budget.GetUsageStats(
        budget_pb.GetUsageStatsRequest(user_id="u1", period=budget_pb.STATS_PERIOD_MONTH),
        metadata=tokens.admin(),
    )
    check = budget.ReconcileLedger(budget_pb.ReconcileLedgerRequest(), metadata=tokens.admin())
    assert check.consistent, check.differences


def _stamp(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


@pytest.mark.parametrize(
    ("field", "stamp"),
    [
        ("start_time", _stamp(1_773_000_000, -1)),
        ("end_time", _stamp(10**12)),
        ("start_time", _stamp(-62135596800)),  # year 1: year 0 in America/New_York
        ("end_time", _stamp(253402300799)),  # the last second of year 9999
    ],
)
def test_out_of_range_timestamps_are_invalid_argument_even_for_a_user(
    pair: RunningPair, tokens, field: str, stamp: timestamp_pb2.Timestamp
) -> None:
    budget = pair.budget.stub
    user = tokens.user("u1")
    for call in (
        lambda: budget.ListUsage(budget_pb.ListUsageRequest(**{field: stamp}), metadata=user),
        lambda: budget.GetUsageStats(
            budget_pb.GetUsageStatsRequest(
                period=budget_pb.STATS_PERIOD_RANGE, time_zone="America/New_York", **{field: stamp}
            ),
            metadata=user,
        ),
    ):
        assert refused(call) == (grpc.StatusCode.INVALID_ARGUMENT, {field})
    if field == "start_time":
        reconcile = budget_pb.ReconcileLedgerRequest(start_time=stamp)
        code, fields = refused(lambda: budget.ReconcileLedger(reconcile, metadata=tokens.admin()))
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"start_time"})


def _forged(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


FORGED_TOKENS = [
    _forged({"v": 1, "p": {"c": "Infinity", "i": "Infinity"}, "q": "x"}),
    _forged({"v": 1, "p": {"i": 2**64, "u": 2**64}, "q": "x"}),
    _forged({"v": 1, "p": {"c": "2026-03-10T12:00:00", "i": "a"}, "q": "x"}),
    "not-a-token",
]


@pytest.mark.parametrize("token", FORGED_TOKENS)
def test_forged_page_tokens_are_invalid_argument(pair: RunningPair, tokens, token: str) -> None:
    budget = pair.budget.stub
    for call in (
        lambda: budget.ListUsage(
            budget_pb.ListUsageRequest(page_token=token), metadata=tokens.user("u1")
        ),
        lambda: budget.ListAuditLog(
            budget_pb.ListAuditLogRequest(page_token=token), metadata=tokens.admin()
        ),
        lambda: pair.image.GetCacheStats(
            image_pb.GetCacheStatsRequest(page_token=token), metadata=tokens.admin()
        ),
    ):
        assert refused(call) == (grpc.StatusCode.INVALID_ARGUMENT, {"page_token"})


def test_a_page_token_altered_by_one_character_is_refused(pair: RunningPair, tokens) -> None:
    budget = pair.budget.stub
    for index in range(3):
        budget.SetUserTier(
            budget_pb.SetUserTierRequest(user_id=f"u{index}", tier=budget_pb.USER_TIER_PRO),
            metadata=tokens.admin(),
        )
    page = budget.ListAuditLog(budget_pb.ListAuditLogRequest(page_size=1), metadata=tokens.admin())
    token = page.next_page_token
    assert token
    tampered = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    code, fields = refused(
        lambda: budget.ListAuditLog(
            budget_pb.ListAuditLogRequest(page_size=1, page_token=tampered), metadata=tokens.admin()
        )
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"page_token"})


def test_an_image_id_with_a_trailing_newline_is_malformed(pair: RunningPair, tokens) -> None:
    made = pair.image.GenerateImage(
        image_pb.GenerateImageRequest(recipe=SOUP), metadata=tokens.user("u1")
    )
    image_id = made.image.image_id
    assert pair.image.GetImage(
        image_pb.GetImageRequest(image_id=image_id), metadata=tokens.user("u1")
    )
    code, fields = refused(
        lambda: pair.image.GetImage(
            image_pb.GetImageRequest(image_id=image_id + "\n"), metadata=tokens.user("u1")
        )
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"image_id"})


def test_the_database_refuses_money_above_the_bound_too(pair: RunningPair, tokens) -> None:
    budget = pair.budget.stub
    budget.SetSystemLimits(
        budget_pb.SetSystemLimitsRequest(daily_limit_micros=MAX_MONEY_MICROS),
        metadata=tokens.admin(),
    )
    engine = create_db_engine(pair.budget.app.settings.database_url)
    try:
        with pytest.raises(DBAPIError), engine.begin() as connection:
            connection.execute(
                text("UPDATE budget_system_limits SET daily_limit_micros = :amount"),
                {"amount": MAX_MONEY_MICROS + 1},
            )
    finally:
        engine.dispose()


def test_the_database_bound_is_the_edge_bound() -> None:
    migration = importlib.import_module(
        "services.budget.migrations.versions.0003_budget_money_bounds"
    )
    assert migration.MONEY_BOUND_MICROS == MAX_MONEY_MICROS


def test_an_image_whose_file_is_gone_is_not_found_and_no_longer_served(
    pair: RunningPair, tokens
) -> None:
    request = image_pb.GenerateImageRequest(recipe=SOUP)
    made = pair.image.GenerateImage(request, metadata=tokens.user("u1"))
    image_id = made.image.image_id
    [stored] = pair.store_dir.rglob(f"{image_id}.*")
    stored.unlink()
    code, _ = refused(
        lambda: pair.image.GetImage(
            image_pb.GetImageRequest(image_id=image_id), metadata=tokens.user("u1")
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    again = pair.image.GenerateImage(request, metadata=tokens.user("u1"))
    assert again.source == image_pb.IMAGE_SOURCE_GENERATED
    data = pair.image.GetImage(
        image_pb.GetImageRequest(image_id=again.image.image_id), metadata=tokens.user("u1")
    ).data
    assert data
