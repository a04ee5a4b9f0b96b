"""Alert webhooks against a real HTTP receiver on loopback, on SQLite and
PostgreSQL: delivered once per destination, signed, retried with backoff
through failures and timeouts with the same delivery id, kept across a
restart, never sent twice at once by two deliverers."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.budget.domain.alerts import Severity
from services.budget.domain.limits import TierLimits
from services.budget.domain.webhooks import SendResult
from services.budget.main import webhook_deliverer
from services.budget.store.unit_of_work import BudgetStore
from services.common.db import create_db_engine, create_sessions
from services.common.telemetry import Metrics
from tests.budget.alerts_support import spend
from tests.budget.conftest import T0
from tests.budget.webhooks_support import (
    SECRET,
    Raiser,
    chat,
    deliveries,
    hooks,
    pager,
    silence,
    store_of,
)
from tests.support.budget_server import ManualClock, budget_settings, running_budget, tiers
from tests.support.webhook_receiver import WebhookReceiver, verify, webhook_receiver

SMALL = tiers(free=TierLimits(100_000, 1_000_000, 100_000))


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    with webhook_receiver() as running:
        yield running


def metric(budget, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    text = generate_latest(budget.app.metrics.registry).decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_an_alert_is_delivered_once_to_each_destination(
    database_url, authenticator, tokens, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    webhooks = hooks(chat(receiver), pager(receiver))
    with running_budget(
        database_url, authenticator, clock=clock, tiers=SMALL, webhooks=webhooks
    ) as budget:
        spend(budget, tokens, 50_000)  # 50% of u1's daily limit, through real commits

        assert budget.app.webhooks.run_once() == 2
        assert budget.app.webhooks.run_once() == 0
        assert len(receiver.requests) == 2

        [slack] = receiver.to("chat")
        assert slack.headers["Content-Type"] == "application/json"
        assert set(slack.json) == {"text", "blocks"}
        text = "[info] user u1 daily budget reached 50% of its limit: spent 0.05 USD of 0.10 USD"
        assert slack.json["text"] == f":information_source: {text}"
        assert [block["type"] for block in slack.json["blocks"]] == ["section", "context"]
        assert slack.delivery_id in slack.json["blocks"][1]["elements"][0]["text"]
        assert "X-Recipeimage-Signature" not in slack.headers  # no secret, no signature

        [signed] = receiver.to("pager")
        body = signed.json
        assert body["type"] == "budget.alert" and body["destination"] == "pager"
        assert body["delivery_id"] == signed.delivery_id != slack.delivery_id
        assert body["alert"]["rule"] == "user_limit_50"
        assert body["alert"]["user_id"] == body["alert"]["subject"] == "u1"
        assert body["alert"]["severity"] == "info"
        assert body["alert"]["raised_at"] == "2026-03-10T12:00:00Z"
        assert signed.headers["X-Recipeimage-Attempt"] == "1"
        header = signed.headers["X-Recipeimage-Signature"]
        assert header.startswith(f"t={int(T0.timestamp())},v1=")
        assert verify(SECRET, header, signed.body, now=T0.timestamp())

        rows = deliveries(store_of(budget))
        assert {(r.destination, r.attempts) for r in rows} == {("chat", 1), ("pager", 1)}
        assert all(r.delivered_at == T0 for r in rows)
        assert metric(budget, "recipeimage_webhook_deliveries_total", result="delivered") == 2
        assert metric(budget, "recipeimage_webhook_deliveries_pending") == 0


def test_the_signature_fails_with_a_wrong_secret_a_stale_time_or_another_body(
    database_url, authenticator, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    with running_budget(
        database_url, authenticator, clock=clock, webhooks=hooks(pager(receiver))
    ) as budget:
        Raiser.of(budget, clock)(T0)
        budget.app.webhooks.run_once()
    [signed] = receiver.requests
    header, now = signed.headers["X-Recipeimage-Signature"], T0.timestamp()
    assert verify(SECRET, header, signed.body, now=now + 299)
    assert not verify("whsec-wrong-secret-0000", header, signed.body, now=now)
    assert not verify(SECRET, header, signed.body, now=now + 301)  # stale: a replay
    assert not verify(SECRET, header, signed.body.replace(b"system", b"sistem"), now=now)
    assert not verify(SECRET, "v1=" + header.partition("v1=")[2], signed.body, now=now)


def test_filters_and_silences_decide_what_is_sent(
    database_url, authenticator, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    webhooks = hooks(
        chat(receiver, severities=frozenset({Severity.CRITICAL})),
        pager(receiver, rules=frozenset({"system_limit_80"})),
    )
    with running_budget(database_url, authenticator, clock=clock, webhooks=webhooks) as budget:
        raise_alert = Raiser.of(budget, clock)
        warning = raise_alert(T0, rule="system_limit_80")
        critical = raise_alert(T0, rule="system_limit_100", severity=Severity.CRITICAL)
        raise_alert(T0, rule="user_limit_80", subject="u1")  # neither's
        silence(store_of(budget), "system_limit_80", "", T0)
        silenced = raise_alert(T0, rule="system_limit_80")
        assert silenced.silenced
        assert len(deliveries(store_of(budget))) == 2
        assert budget.app.webhooks.run_once() == 2
    assert [r.json["alert"]["id"] for r in receiver.to("pager")] == [warning.id]
    assert [r.json["text"] for r in receiver.to("chat")] == [
        f":rotating_light: [critical] {critical.message}"
    ]
    assert len(receiver.requests) == 2


def test_a_failing_receiver_is_retried_with_backoff_until_it_recovers(
    database_url, authenticator, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    with running_budget(
        database_url, authenticator, clock=clock, webhooks=hooks(pager(receiver))
    ) as budget:
        deliverer, store = budget.app.webhooks, store_of(budget)
        Raiser.of(budget, clock)(T0)
        receiver.fail(500)
        assert deliverer.run_once() == 0
        [row] = deliveries(store)
        assert row.attempts == 1 and row.delivered_at is None and row.last_error == "HTTP 500: ok"
        # 10 s, less up to half of it at random.
        assert T0 + timedelta(seconds=5) <= row.next_attempt_at <= T0 + timedelta(seconds=10)
        assert deliverer.run_once() == 0 and len(receiver.requests) == 1  # not due yet

        clock.set(T0 + timedelta(seconds=10))
        assert deliverer.run_once() == 0
        [row] = deliveries(store)
        assert row.attempts == 2
        # 20 s after the second attempt, less up to half.
        assert clock.now() + timedelta(seconds=10) <= row.next_attempt_at
        assert row.next_attempt_at <= clock.now() + timedelta(seconds=20)
        assert metric(budget, "recipeimage_webhook_deliveries_pending") == 1
        assert metric(budget, "recipeimage_webhook_delivery_oldest_age_seconds") == 10

        receiver.recover()
        clock.set(T0 + timedelta(seconds=30))
        assert deliverer.run_once() == 1
        [row] = deliveries(store)
        assert row.attempts == 3 and row.delivered_at == clock.now()
        assert metric(budget, "recipeimage_webhook_deliveries_pending") == 0
        by_result = {
            result.value: metric(
                budget,
                "recipeimage_webhook_deliveries_total",
                destination="pager",
                result=result.value,
            )
            for result in SendResult
        }
    assert by_result == {"delivered": 1, "rejected": 2, "timeout": 0, "unreachable": 0}
    attempts = receiver.requests
    assert [r.status for r in attempts] == [500, 500, 200]
    assert len({r.delivery_id for r in attempts}) == 1
    assert len({r.body for r in attempts}) == 1
    assert [r.headers["X-Recipeimage-Attempt"] for r in attempts] == ["1", "2", "3"]
    assert all(
        verify(
            SECRET,
            r.headers["X-Recipeimage-Signature"],
            r.body,
            now=(T0 + timedelta(seconds=30)).timestamp(),
        )
        for r in attempts
    )


def test_a_timed_out_delivery_is_sent_again_with_the_same_id(
    database_url, authenticator, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    webhooks = hooks(pager(receiver), chat(receiver), timeout=0.3)
    with running_budget(database_url, authenticator, clock=clock, webhooks=webhooks) as budget:
        deliverer = budget.app.webhooks
        Raiser.of(budget, clock)(T0)
        receiver.hang(3.0)
        assert deliverer.run_once() == 0
        # The receiver got both (and would have acted on them); neither answered in time.
        assert len(receiver.requests) == 2
        assert metric(budget, "recipeimage_webhook_deliveries_total", result="timeout") == 2
        receiver.recover()
        clock.advance(timedelta(seconds=10))
        assert deliverer.run_once() == 2
    for name in ("pager", "chat"):
        first, second = receiver.to(name)
        assert first.delivery_id == second.delivery_id and first.body == second.body
    pager_first, pager_second = receiver.to("pager")
    assert (
        pager_first.headers["X-Recipeimage-Signature"]
        != (pager_second.headers["X-Recipeimage-Signature"])
    )  # a fresh timestamp on each attempt


def test_deliveries_pending_at_a_stop_are_sent_after_the_restart(
    database_url, authenticator, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    receiver.fail(503)
    with running_budget(
        database_url, authenticator, clock=clock, webhooks=hooks(pager(receiver))
    ) as budget:
        failed = Raiser.of(budget, clock)(T0)
        budget.app.webhooks.run_once()
    assert len(receiver.requests) == 1

    # While no service runs, a process with the settings raises an alert.
    engine = create_db_engine(database_url)
    try:
        settings = budget_settings(database_url, webhooks=hooks(pager(receiver)))
        raised_meanwhile = Raiser(settings, BudgetStore(create_sessions(engine)), clock)(T0)
    finally:
        engine.dispose()

    receiver.recover()
    clock.advance(timedelta(minutes=5))
    webhooks = hooks(pager(receiver), interval=0.05)  # the background deliverer
    with running_budget(database_url, authenticator, clock=clock, webhooks=webhooks) as budget:
        received = receiver.wait_for(3)
        assert {r.json["alert"]["id"] for r in received[1:]} == {failed.id, raised_meanwhile.id}
        assert received[0].delivery_id in {r.delivery_id for r in received[1:]}
        threading.Event().wait(0.3)  # a few more runs: nothing more is sent
        assert len(receiver.requests) == 3
        assert all(r.delivered_at is not None for r in deliveries(store_of(budget)))


def test_two_deliverers_never_send_one_delivery_at_once(
    database_url, authenticator, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    settings = budget_settings(database_url, webhooks=hooks(pager(receiver)))
    engines = [create_db_engine(database_url, pool_size=2) for _ in range(2)]
    try:
        deliverers = [
            webhook_deliverer(settings, BudgetStore(create_sessions(e)), clock, Metrics("budget"))
            for e in engines
        ]
        raise_alert = Raiser(settings, BudgetStore(create_sessions(engines[0])), clock)
        raised = [raise_alert(T0) for _ in range(24)]
        receiver.slow(0.03)
        counts: list[int] = []
        threads = [
            threading.Thread(target=lambda d=d: counts.append(d.deliver_due())) for d in deliverers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for engine in engines:
            engine.dispose()
    received = receiver.requests
    assert receiver.overlaps == []
    assert len(received) == len({r.delivery_id for r in received}) == 24
    assert {r.json["alert"]["id"] for r in received} == {a.id for a in raised}
    assert sum(counts) == 24
    assert min(counts) > 0  # both took part


def test_a_delivery_whose_deliverer_died_is_taken_over_when_its_lease_ends(
    database_url, authenticator, clock: ManualClock, receiver: WebhookReceiver
) -> None:
    with running_budget(
        database_url, authenticator, clock=clock, webhooks=hooks(pager(receiver), timeout=2.0)
    ) as budget:
        Raiser.of(budget, clock)(T0)
        store = store_of(budget)
        lease_end = T0 + timedelta(seconds=2 * 2 + 30)  # twice the timeout, plus 30 s
        with store.transaction() as tx:  # a deliverer claims the row, then dies
            dead = tx.webhooks.claim_due({"pager"}, T0, lease_end, "dead-deliverer")
        assert dead is not None
        clock.set(lease_end - timedelta(seconds=1))
        assert budget.app.webhooks.run_once() == 0 and receiver.requests == []
        clock.set(lease_end)
        assert budget.app.webhooks.run_once() == 1
        with store.transaction() as tx:  # the dead one's late word changes nothing
            assert not tx.webhooks.record_failed(dead, "late", lease_end)
        [row] = deliveries(store)
        assert row.attempts == 2 and row.delivered_at == lease_end
    [request] = receiver.requests
    assert request.headers["X-Recipeimage-Attempt"] == "2"
