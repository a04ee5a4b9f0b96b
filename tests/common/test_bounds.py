"""The bounds every request keeps, checked at the edge for every RPC."""

import pytest
from google.protobuf import timestamp_pb2
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as image_pb

from services.common.auth import Authenticator, Role
from services.common.bounds import MAX_MONEY_MICROS, MAX_TEXT_CHARS, check_request
from services.common.errors import InvalidArgument, Unauthenticated
from tests.conftest import TEST_SECRET


def violations(message) -> dict[str, str]:
    with pytest.raises(InvalidArgument) as raised:
        check_request(message)
    return {v.field: v.description for v in raised.value.violations}


def test_a_well_formed_request_passes() -> None:
    check_request(
        image_pb.GenerateImageRequest(
            user_id="u1",
            recipe=image_pb.Recipe(
                title="Tomato soup",
                ingredients=["2 tomatoes", "salt"],
                instructions=["Chop.\nSimmer\tfor 20 minutes.\r\n"],
            ),
            min_similarity=0.9,
        )
    )
    check_request(budget_pb.CommitReservationRequest(actual_cost_micros=MAX_MONEY_MICROS))


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x1b[31m", "\x7f", "\x85"])
def test_control_characters_are_refused_in_every_string_nested_or_repeated(bad: str) -> None:
    request = image_pb.GenerateImageRequest(
        user_id="u" + bad,
        recipe=image_pb.Recipe(recipe_id="x" + bad, title="t", ingredients=["salt", bad]),
        prompt="a photo" + bad,
    )
    found = violations(request)
    assert set(found) == {"user_id", "recipe.recipe_id", "recipe.ingredients[1]", "prompt"}
    assert "control character" in found["user_id"]


def test_identifiers_refuse_even_newlines_and_tabs_but_text_allows_them() -> None:
    found = violations(
        budget_pb.GetLimitsRequest(user_id="bob\n"),
    )
    assert list(found) == ["user_id"]
    check_request(image_pb.GenerateImageRequest(recipe=image_pb.Recipe(title="a\tb")))


def test_strings_are_bounded() -> None:
    found = violations(
        image_pb.GenerateImageRequest(user_id="u" * 257, prompt="p" * (MAX_TEXT_CHARS + 1))
    )
    assert set(found) == {"user_id", "prompt"}


def test_money_is_bounded_far_below_overflow() -> None:
    found = violations(budget_pb.CommitReservationRequest(actual_cost_micros=2**62))
    assert list(found) == ["actual_cost_micros"]
    found = violations(
        budget_pb.SetSystemLimitsRequest(
            daily_limit_micros=2**63 - 1, monthly_limit_micros=MAX_MONEY_MICROS + 1
        )
    )
    assert set(found) == {"daily_limit_micros", "monthly_limit_micros"}


def test_doubles_must_be_finite() -> None:
    for value in (float("nan"), float("inf"), float("-inf")):
        assert list(violations(image_pb.GenerateImageRequest(min_similarity=value))) == [
            "min_similarity"
        ]


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(1_700_000_000, -1), (1_700_000_000, 10**9), (10**12, 0), (-62135596800, 0), (0, 0)],
)
def test_timestamps_outside_the_supported_range_are_refused(seconds: int, nanos: int) -> None:
    request = budget_pb.ListUsageRequest(
        user_id="u1", start_time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    )
    assert list(violations(request)) == ["start_time"]


def test_a_token_subject_with_control_characters_is_not_a_principal() -> None:
    authenticator = Authenticator(TEST_SECRET)
    for subject in ("bob\x00", "bob\n", "b" * 300):
        token = authenticator.mint(Role.USER, subject)
        with pytest.raises(Unauthenticated):
            authenticator.authenticate([("authorization", f"Bearer {token}")])
