"""Delivering alerts to webhooks, at least once, from the outbox (store.webhooks).

WebhookOutbox is the AlertRaiser's outbox: in the transaction that raises
alerts it writes one delivery per alert and destination that wants it (never
a silenced alert), so no alert is committed without its deliveries.

Every replica runs a WebhookDeliverer (a PeriodicJob; interval 0: never). A
run sends what is due, one claimed row at a time: a 2xx acknowledges the row;
anything else leaves it pending, retried after retry_delay (exponential,
jittered), for as long as it takes. A destination that fails is not tried
again in the same run, so one dead receiver costs a run at most one timeout.

No I/O here but through the ports: the store, the WebhookSender (main wires
the HTTP adapter), the clock and the jitter source.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Protocol

from services.budget.domain.alerts import Alert
from services.budget.domain.webhooks import (
    SendOutcome,
    SendResult,
    WebhookDestination,
    WebhookRequest,
    delivery_body,
    retry_delay,
    webhook_request,
)
from services.budget.store.unit_of_work import BudgetStore, Transaction
from services.budget.store.webhooks import ClaimedDelivery, QueuedDelivery
from services.common.clock import Clock
from services.common.periodic import PeriodicJob

log = logging.getLogger("recipeimage.budget.webhooks")

WEBHOOKS_PENDING = "recipeimage_webhook_deliveries_pending"
WEBHOOK_OLDEST_AGE = "recipeimage_webhook_delivery_oldest_age_seconds"
WEBHOOK_GAUGES = {
    WEBHOOKS_PENDING: "Alert webhook deliveries not acknowledged yet (configured destinations).",
    WEBHOOK_OLDEST_AGE: "Age in seconds of the oldest unacknowledged webhook delivery (0: none).",
}

# Counts an attempt by destination name and result (SendResult).
DeliveryCounter = Callable[[str, str], None]


class WebhookSender(Protocol):
    def send(self, request: WebhookRequest, timeout_seconds: float) -> SendOutcome:
        """POST the request; never raises for what the receiver or network did."""
        ...


class WebhookOutbox:
    def __init__(self, destinations: Sequence[WebhookDestination], clock: Clock) -> None:
        self._destinations = tuple(destinations)
        self._clock = clock

    def queue(self, tx: Transaction, alerts: Sequence[Alert]) -> None:
        """A delivery of each alert to each destination that wants it, in tx."""
        deliveries = []
        for alert in alerts:
            for destination in self._destinations:
                if destination.wants(alert):
                    delivery_id = str(uuid.uuid4())
                    body = delivery_body(alert, delivery_id, destination)
                    deliveries.append(QueuedDelivery(delivery_id, alert.id, destination.name, body))
        if deliveries:
            tx.webhooks.queue(deliveries, self._clock.now())


class WebhookDeliverer:
    def __init__(
        self,
        store: BudgetStore,
        destinations: Sequence[WebhookDestination],
        sender: WebhookSender,
        clock: Clock,
        count: DeliveryCounter,
        *,
        timeout_seconds: float,
        longest_retry: timedelta,
        interval_seconds: float,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._destinations = {d.name: d for d in destinations}
        self._sender = sender
        self._clock = clock
        self._count = count
        self._timeout = timeout_seconds
        # Past the longest an attempt can take, so a live claim never lapses.
        self._lease = timedelta(seconds=2 * timeout_seconds + 30)
        self._longest_retry = longest_retry
        self._jitter = jitter
        self._stopping = threading.Event()
        self._job = PeriodicJob("budget-webhooks", interval_seconds, self.run_once, log)

    def run_once(self) -> int:
        """Send every delivery due; how many were acknowledged."""
        return self.deliver_due()

    # -- sending

    def deliver_due(self) -> int:
        """Send every due delivery of a destination that has not failed in
        this run; how many were acknowledged."""
        healthy = set(self._destinations)
        delivered = 0
        while not self._stopping.is_set() and (claimed := self._claim(healthy)):
            if self._attempt(claimed):
                delivered += 1
            else:
                healthy.discard(claimed.destination)
        return delivered

    def _claim(self, destinations: set[str]) -> ClaimedDelivery | None:
        now = self._clock.now()
        with self._store.transaction() as tx:
            return tx.webhooks.claim_due(destinations, now, now + self._lease, uuid.uuid4().hex)

    def _attempt(self, claimed: ClaimedDelivery) -> bool:
        destination = self._destinations[claimed.destination]
        request = webhook_request(
            destination, claimed.delivery_id, claimed.body, claimed.attempts, self._clock.now()
        )
        outcome = self._sender.send(request, self._timeout)
        self._count(destination.name, outcome.result.value)
        now = self._clock.now()
        with self._store.transaction() as tx:
            if outcome.result is SendResult.DELIVERED:
                kept = tx.webhooks.record_delivered(claimed, now)
            else:
                delay = retry_delay(claimed.attempts, self._jitter(), self._longest_retry)
                kept = tx.webhooks.record_failed(claimed, outcome.detail, now + delay)
        if not kept:
            log.warning(
                "webhook delivery outlived its lease",
                extra={"delivery_id": claimed.delivery_id, "destination": destination.name},
            )
        if outcome.result is not SendResult.DELIVERED:
            log.info(
                "webhook delivery failed; will retry",
                extra={
                    "delivery_id": claimed.delivery_id,
                    "destination": destination.name,
                    "attempt": claimed.attempts,
                    "error": outcome.detail,
                },
            )
        return outcome.result is SendResult.DELIVERED

    # -- monitoring and lifetime

    def backlog(self) -> dict[str, float]:
        """The outbox for the monitoring gauges (read at each scrape)."""
        with self._store.transaction() as tx:
            pending, oldest = tx.webhooks.backlog(self._destinations)
        age = (self._clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        return {WEBHOOKS_PENDING: pending, WEBHOOK_OLDEST_AGE: max(age, 0.0)}

    def start(self) -> None:
        """Run every interval (0: never)."""
        if self._destinations:
            self._job.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the attempt in flight (its row stays claimed until then) and stop."""
        self._stopping.set()
        self._job.stop(timeout)
