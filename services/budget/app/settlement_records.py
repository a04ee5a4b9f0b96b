"""What settling a reservation writes beside its state: the attempt's one
usage record (a late settlement amends the reaper's abandoned record), what it
does to the windows, and the log lines of a commit out of the ordinary."""

from __future__ import annotations

import logging
from dataclasses import replace

from services.budget.domain.reservations import Reservation, Settlement
from services.budget.domain.usage import Usage
from services.budget.store.usage import UsageStore

log = logging.getLogger("recipeimage.budget.reservations")

# A spend whose request_id names another record is recorded under this prefix
# and the reservation's id.
SPEND_REQUEST_PREFIX = "reservation:"


def commit_settlement(reservation: Reservation, actual_cost_micros: int) -> Settlement:
    """An expired reservation's hold went back to the windows already; the
    money was spent all the same, so the spend is recorded, and what no hold
    covered is counted as overrun."""
    if reservation.overrun:  # it had expired
        return Settlement(0, actual_cost_micros, actual_cost_micros)
    uncovered = max(0, actual_cost_micros - reservation.amount_micros)
    return Settlement(reservation.amount_micros, actual_cost_micros, uncovered)


def store_spend(usage_store: UsageStore, reservation: Reservation, usage: Usage) -> None:
    """The commit's record, in the commit's transaction: the spend is never
    without its record. A late commit amends the reaper's abandoned record, so
    the attempt keeps one record. Should the key name another record (only a
    RecordUsage racing this reservation's ReserveBudget can do that), the
    spend is recorded under the reservation's own id instead."""
    if usage_store.store_usage(usage) or usage_store.amend_abandoned(usage):
        return
    fallback = replace(usage, request_id=f"{SPEND_REQUEST_PREFIX}{reservation.id}")
    log.error(
        "the attempt's request_id names another usage record; spend recorded under the "
        "reservation's id",
        extra={
            "reservation_id": reservation.id,
            "request_id": usage.request_id,
            "recorded_as": fallback.request_id,
        },
    )
    if not usage_store.store_usage(fallback):  # pragma: no cover - ids are unique
        raise RuntimeError(f"usage record {fallback.request_id!r} exists")


def store_attempt(usage_store: UsageStore, reservation: Reservation, usage: Usage) -> bool:
    """The release's record; a late release amends the reaper's abandoned
    record. False when another record of the attempt stays its one record."""
    if usage_store.store_usage(usage) or usage_store.amend_abandoned(usage):
        return True
    # A record with the key as request_id exists (a RecordUsage racing the
    # reservation); it stays the attempt's one record.
    log.info(
        "attempt already recorded",
        extra={"reservation_id": reservation.id, "request_id": usage.request_id},
    )
    return False


def log_commit_anomalies(reservation: Reservation, reported: int, settlement: Settlement) -> None:
    """A commit capped at MAX_COMMIT_FACTOR x its hold (ERROR: a pricing or
    reporting fault), and one beyond its hold (WARNING: overrun)."""
    charged = reservation.committed_micros
    if charged < reported:
        log.error(
            "a commit far above its hold was capped",
            extra={
                "reservation_id": reservation.id,
                "user_id": reservation.user_id,
                "held_micros": reservation.amount_micros,
                "reported_micros": reported,
                "charged_micros": charged,
            },
        )
    if settlement.overrun_micros:
        log.warning(
            "commit beyond the hold",
            extra={
                "reservation_id": reservation.id,
                "user_id": reservation.user_id,
                "held_micros": reservation.amount_micros,
                "actual_micros": charged,
                "overrun_micros": settlement.overrun_micros,
                "expired": reservation.overrun,
            },
        )
