"""Every periodic job runs in every replica at once, and each thing it acts on
is acted on exactly once: two BudgetService processes (the reaper, the alert
evaluator, the webhook deliverer) and two ImageService processes (the
settler, the cache purger) on one PostgreSQL database, every job every 0.2 s.

The test builds what each job acts on: expired reservations, settlements
whose writer never reported back, invalidated cache entries, spend that the
evaluator judges unusual, and alerts with a webhook to a real local receiver.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as pb
from sqlalchemy import func, select, update

from services.budget.store.models import AlertRow, ReservationRow, WebhookDeliveryRow
from services.common.db import create_db_engine, create_sessions
from services.image.domain.accounting import Outcome, Usage
from services.image.domain.settlement import Settlement
from services.image.settings import DEFAULT_MODEL
from services.image.store.models import CacheEntry, PendingSettlement
from services.image.store.settlements import SettlementRepository
from tests.budget.test_processes import zone_far_from_midnight
from tests.image.conftest import CAKE, SOUP, generate_request
from tests.replicas.conftest import PASTA, REPLICAS
from tests.replicas.reading import fetch, ledger, reservations
from tests.support.fake_openai import FakeOpenAI
from tests.support.replicas import Replicas, running_replicas
from tests.support.webhook_receiver import webhook_receiver

pytestmark = REPLICAS

REAPED = 10
SETTLED = 6
AMOUNT = 40_000
SECRET = "a-webhook-secret-of-enough-length"
# Raised inline by a commit; every other rule is the evaluator's.
THRESHOLD_RULES = ("user_limit_", "system_limit_")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def count(url: str, model: type, *where: object) -> int:
    return int(fetch(url, select(func.count()).select_from(model).where(*where))[0][0])  # type: ignore[arg-type]


def handled(processes: list, job: str) -> int:  # type: ignore[type-arg]
    return sum(process.handled(job) for process in processes)


def test_every_job_on_every_replica_acts_on_each_thing_once(
    postgres_url, tmp_path, fake: FakeOpenAI, tokens
) -> None:
    with webhook_receiver() as receiver:
        budget_env = {
            "RECIPEIMAGE_BUDGET_TIME_ZONE": zone_far_from_midnight(),
            "RECIPEIMAGE_REAPER_INTERVAL_SECONDS": "0.2",
            "RECIPEIMAGE_ALERT_EVALUATION_INTERVAL_SECONDS": "0.2",
            # Any spend today is unusual spend (no history, a floor of 1 micro).
            "RECIPEIMAGE_ALERT_UNUSUAL_SPEND_FLOOR_MICROS": "1",
            "RECIPEIMAGE_ALERT_WEBHOOK_INTERVAL_SECONDS": "0.2",
            "RECIPEIMAGE_ALERT_WEBHOOKS": json.dumps(
                [{"name": "ops", "url": receiver.url("ops"), "format": "json", "secret": SECRET}]
            ),
        }
        image_env = {
            "RECIPEIMAGE_SETTLEMENT_INTERVAL_SECONDS": "0.2",
            "RECIPEIMAGE_CACHE_PURGE_INTERVAL_SECONDS": "0.2",
        }
        with running_replicas(
            postgres_url, tmp_path, fake, budget_env=budget_env, image_env=image_env
        ) as replicas:
            generated = generate_three_images(replicas, tokens)
            purged_once(replicas, generated, tokens)
            reaped_once(replicas, tokens)
            settled_once(replicas, tokens)
            alerted_and_delivered_once(replicas, receiver)
            check = replicas.budget.ReconcileLedger(
                budget_pb.ReconcileLedgerRequest(), metadata=tokens.admin()
            )
            assert check.consistent, check.differences


def generate_three_images(replicas: Replicas, tokens) -> list[str]:  # type: ignore[no-untyped-def]
    """Spend for three users (the evaluator's unusual spend), three cache entries."""
    replies = [
        replicas.image.GenerateImage(
            generate_request(recipe), metadata=tokens.user(user), timeout=60
        )
        for recipe, user in ((SOUP, "a"), (CAKE, "b"), (PASTA, "c"))
    ]
    assert [reply.source for reply in replies] == [pb.IMAGE_SOURCE_GENERATED] * 3
    return [reply.image.image_id for reply in replies]


def purged_once(replicas: Replicas, image_ids: list[str], tokens) -> None:  # type: ignore[no-untyped-def]
    url = replicas.database_url
    entries = count(url, CacheEntry)
    invalidated = sum(
        replicas.image.InvalidateCachedImage(
            pb.InvalidateCachedImageRequest(image_id=image_id), metadata=tokens.admin()
        ).invalidated_entries
        for image_id in image_ids
    )
    assert invalidated == entries == 3
    wait_until(lambda: count(url, CacheEntry) == 0, "the purgers")
    time.sleep(0.5)  # more runs of both purgers: nothing left to purge
    assert handled(replicas.images, "image-cache-purger") == invalidated


def reaped_once(replicas: Replicas, tokens) -> None:  # type: ignore[no-untyped-def]
    """Reservations whose holder never came back, past their expiry."""
    url = replicas.database_url
    ids = [
        replicas.budget.ReserveBudget(
            budget_pb.ReserveBudgetRequest(
                user_id=f"r{n % 3}", amount_micros=AMOUNT, idempotency_key=f"reap-{n}"
            ),
            metadata=tokens.service(),
            timeout=30,
        ).reservation.reservation_id
        for n in range(REAPED)
    ]
    expire(url, ids)
    wait_until(
        lambda: (
            Counter(state for key, _, state in reservations(url) if key.startswith("reap-"))
            == {"expired": REAPED}
        ),
        "the reapers",
    )
    time.sleep(0.5)
    expired = [
        entry["reservation_id"]
        for budget in replicas.budgets
        for entry in budget.messages("reservation expired")
    ]
    assert sorted(expired) == sorted(ids)
    abandoned = [(key, outcome) for key, _, outcome, _ in ledger(url) if key.startswith("reap-")]
    assert sorted(abandoned) == sorted((f"reap-{n}", "abandoned") for n in range(REAPED))


def expire(url: str, reservation_ids: list[str]) -> None:
    engine = create_db_engine(url, pool_size=1)
    try:
        with create_sessions(engine).begin() as session:
            session.execute(
                update(ReservationRow)
                .where(ReservationRow.id.in_(reservation_ids))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        engine.dispose()


def settled_once(replicas: Replicas, tokens) -> None:  # type: ignore[no-untyped-def]
    """Commits an ImageService wrote to its outbox and never reported back
    on (it died), due again: the settlers on both replicas take each once."""
    url = replicas.database_url
    commits_before = sum(replicas.rpc_count(b, "CommitReservation") for b in replicas.budgets)
    keys = [f"settle-{n}" for n in range(SETTLED)]
    reserved = [
        replicas.budget.ReserveBudget(
            budget_pb.ReserveBudgetRequest(
                user_id=f"s{n % 2}", amount_micros=AMOUNT, idempotency_key=key
            ),
            metadata=tokens.service(),
            timeout=30,
        ).reservation
        for n, key in enumerate(keys)
    ]
    write_abandoned_outbox_rows(url, reserved)
    wait_until(lambda: count(url, PendingSettlement) == 0, "the settlers")
    time.sleep(0.5)
    assert handled(replicas.images, "image-settler") == SETTLED
    commits = sum(replicas.rpc_count(b, "CommitReservation") for b in replicas.budgets)
    assert commits - commits_before == SETTLED
    states = {key: state for key, _, state in reservations(url)}
    assert [states[key] for key in keys] == ["committed"] * SETTLED
    records = [(key, outcome, cost) for key, _, outcome, cost in ledger(url) if key in keys]
    assert sorted(records) == [(key, "generated", AMOUNT) for key in sorted(keys)]


def write_abandoned_outbox_rows(url: str, reserved: list) -> None:  # type: ignore[type-arg]
    """The request path's outbox rows, then their claim period run out, as
    when the ImageService that wrote them died before its attempt."""
    now = datetime.now(UTC)
    engine = create_db_engine(url, pool_size=1)
    try:
        with create_sessions(engine).begin() as session:
            repository = SettlementRepository(session)
            for reservation in reserved:
                usage = Usage(
                    request_id=reservation.idempotency_key,
                    user_id=reservation.user_id,
                    recipe_id="r-outbox",
                    prompt="A photo of a dish",
                    size="1024x1024",
                    quality="medium",
                    model=DEFAULT_MODEL,
                    provider="openai",
                    outcome=Outcome.GENERATED,
                    cost_micros=AMOUNT,
                    success=True,
                )
                repository.add(Settlement.commit(reservation.reservation_id, AMOUNT, usage), now)
            session.execute(
                update(PendingSettlement).values(next_attempt_at=now - timedelta(seconds=1))
            )
    finally:
        engine.dispose()


def alerted_and_delivered_once(replicas: Replicas, receiver) -> None:  # type: ignore[no-untyped-def]
    """The evaluators raised each unusual-spend alert once, the commits each
    threshold alert once, and the deliverers sent each alert once."""
    url = replicas.database_url
    spenders = {"a", "b", "c", "s0", "s1"}
    wait_until(
        lambda: (
            {
                subject
                for rule, subject in fetch(url, select(AlertRow.rule, AlertRow.subject))
                if rule == "unusual_spend"
            }
            == spenders
        ),
        "the evaluators",
    )
    wait_until(
        lambda: count(url, WebhookDeliveryRow, WebhookDeliveryRow.delivered_at.is_(None)) == 0,
        "the deliverers",
    )
    time.sleep(1.0)  # several more runs of every job: nothing more happens
    alerts = fetch(url, select(AlertRow.id, AlertRow.rule, AlertRow.subject, AlertRow.window))
    keys = [(rule, subject, window) for _, rule, subject, window in alerts]
    assert len(keys) == len(set(keys)), Counter(keys)
    by_evaluator = [row for row in alerts if not row[1].startswith(THRESHOLD_RULES)]
    assert handled(replicas.budgets, "budget-alerts") == len(by_evaluator)

    received = receiver.to("ops")
    delivered_alerts = [request.json["alert"]["id"] for request in received]
    assert sorted(delivered_alerts) == sorted(row[0] for row in alerts)
    assert len({request.delivery_id for request in received}) == len(received)
    assert receiver.overlaps == []
