"""Shutdown with a paid generation in flight: it finishes and is committed,
never recorded as a failed attempt at cost 0 (issue 7, case 5)."""

from __future__ import annotations

import contextlib
import threading

import grpc

from services.common.prices import TokenUsage
from services.image.settings import DEFAULT_MODEL
from tests.image.conftest import generate_request, ledger, reservation_states, user_daily
from tests.support.fake_openai import DEFAULT_USAGE
from tests.support.image_server import running_openai_pair


def test_a_generation_longer_than_the_grace_is_committed_not_recorded_free(
    database_url, authenticator, clock, fake, tokens, prices
) -> None:
    fake.script(fake.slow(2.0))
    with running_openai_pair(
        database_url,
        authenticator,
        fake,
        clock=clock,
        openai_max_retries=0,
        openai_timeout_seconds=10,
    ) as pair:
        answers: list[object] = []

        def call() -> None:
            try:
                answers.append(
                    pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
                )
            except grpc.RpcError as error:
                answers.append(error.code())

        caller = threading.Thread(target=call)
        caller.start()
        assert fake.wait_for_requests(1)
        # A grace far shorter than the generation: the call is cancelled, the
        # generation is not.
        pair.app.stop(0.2)
        caller.join(10)
        assert answers and answers[0] != grpc.StatusCode.OK

        cost = prices.model(DEFAULT_MODEL).actual_cost_micros(
            "medium", "1024x1024", TokenUsage(**DEFAULT_USAGE)
        )
        assert reservation_states(pair) == ["committed"]
        [record] = ledger(pair)
        assert (record.outcome, record.success, record.cost_micros) == ("generated", True, cost)
        assert user_daily(pair, tokens).spent_micros == cost


def test_new_calls_are_refused_while_draining(
    database_url, authenticator, clock, fake, tokens
) -> None:
    fake.script(fake.slow(1.5))
    with running_openai_pair(
        database_url,
        authenticator,
        fake,
        clock=clock,
        openai_max_retries=0,
    ) as pair:
        caller = threading.Thread(
            target=lambda: _ignore_errors(
                lambda: pair.image.GenerateImage(generate_request(), metadata=tokens.user("u1"))
            )
        )
        caller.start()
        assert fake.wait_for_requests(1)
        stopping = threading.Thread(target=lambda: pair.app.stop(5))
        stopping.start()
        stopping.join(0.3)
        try:
            pair.image.GenerateImage(generate_request(), metadata=tokens.user("u2"), timeout=2)
            refused = None
        except grpc.RpcError as error:
            refused = error.code()
        assert refused == grpc.StatusCode.UNAVAILABLE
        stopping.join(10)
        caller.join(10)
        assert reservation_states(pair) == ["committed"]


def _ignore_errors(call) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(grpc.RpcError):
        call()
