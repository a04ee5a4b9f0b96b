"""Random traffic through the real RPCs for the system metrics tests, and
the figures a direct read of the ledger gives for a range."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from recipeimage.budget.v1 import budget_service_pb2 as pb
from recipeimage.common.v1 import image_quality_pb2
from sqlalchemy import select

from services.budget.domain.limits import Tier, TierLimits
from services.budget.domain.system_metrics import error_reason
from services.budget.store.models import UsageRow
from services.common import quality
from tests.support.budget_server import RunningBudget, running_budget

TTL = timedelta(seconds=900)
UNLIMITED = TierLimits(10**12, 10**13, 10**9)
# Random traffic begins here; daylight saving time in Europe begins on March 29.
START = datetime(2026, 3, 27, 18, 0, tzinfo=UTC)
MODELS = ("gpt-image-1.5", "gpt-image-2")
SIZES = ("1024x1024", "1536x1024")
QUALITIES = (image_quality_pb2.IMAGE_QUALITY_LOW, image_quality_pb2.IMAGE_QUALITY_HIGH)
MESSAGES = (
    "CONTENT_POLICY_VIOLATION: the provider refused the prompt",
    "PROVIDER_TIMEOUT: no answer in 60 s",
    "INPUT_REJECTED: bad prompt",
    "storing the image failed",
    "",
    "lower: not a reason",
)


@contextmanager
def unlimited_budget(database_url: str, authenticator, clock) -> Iterator[RunningBudget]:  # type: ignore[no-untyped-def]
    """A BudgetService whose limits never refuse the random traffic."""
    with running_budget(
        database_url,
        authenticator,
        clock=clock,
        tiers={tier: UNLIMITED for tier in Tier},
        system_daily_limit_micros=10**13,
        system_monthly_limit_micros=10**14,
    ) as running:
        yield running


class RandomTraffic:
    """Seeded attempts of every kind at random instants: generated (reserve,
    commit), failed (reserve, release), cache hits, refusals, and abandoned
    attempts (the reaper's record), some settled late (the amendment)."""

    def __init__(self, budget, tokens, clock, seed: int) -> None:  # type: ignore[no-untyped-def]
        self.budget, self.tokens, self.clock = budget, tokens, clock
        self.rng = random.Random(seed)
        self.n = 0

    def _usage(self, **fields) -> pb.UsageRecord:  # type: ignore[no-untyped-def]
        return pb.UsageRecord(
            model=self.rng.choice(MODELS),
            size=self.rng.choice(SIZES),
            quality=self.rng.choice(QUALITIES),
            **fields,
        )

    def _reserve(self, user: str, key: str, amount: int) -> pb.Reservation:
        return self.budget.stub.ReserveBudget(
            pb.ReserveBudgetRequest(user_id=user, amount_micros=amount, idempotency_key=key),
            metadata=self.tokens.service(),
        ).reservation

    def _settle(self, held: pb.Reservation, cost: int | None) -> None:
        if cost is None:
            message = self.rng.choice(MESSAGES)
            self.budget.stub.ReleaseReservation(
                pb.ReleaseReservationRequest(
                    reservation_id=held.reservation_id,
                    usage=self._usage(error_message=message, outcome=pb.USAGE_OUTCOME_FAILED),
                ),
                metadata=self.tokens.service(),
            )
            return
        self.budget.stub.CommitReservation(
            pb.CommitReservationRequest(
                reservation_id=held.reservation_id, actual_cost_micros=cost, usage=self._usage()
            ),
            metadata=self.tokens.service(),
        )

    def attempt(self, when: datetime) -> None:
        self.n += 1
        key, user = f"k{self.n}", f"u{self.rng.randrange(6)}"
        self.clock.set(when)
        kind = self.rng.random()
        if kind < 0.45:
            self._settle(self._reserve(user, key, 90_000), self.rng.randrange(1, 80_000))
        elif kind < 0.55:
            self._settle(self._reserve(user, key, 90_000), None)
        elif kind < 0.85:
            outcome = self.rng.choice(
                [
                    pb.USAGE_OUTCOME_CACHE_HIT_EXACT,
                    pb.USAGE_OUTCOME_CACHE_HIT_SIMILAR,
                    pb.USAGE_OUTCOME_REFUSED,
                    pb.USAGE_OUTCOME_FALLBACK,
                ]
            )
            saved = self.rng.randrange(0, 50_000) if outcome <= 3 else 0
            message = "" if outcome <= 3 else self.rng.choice(MESSAGES)
            self.budget.stub.RecordUsage(
                pb.RecordUsageRequest(
                    usage=self._usage(
                        request_id=key,
                        user_id=user,
                        outcome=outcome,
                        cost_saved_micros=saved,
                        error_message=message,
                    )
                ),
                metadata=self.tokens.service(),
            )
        else:
            # Abandoned: the reaper records it; half are settled late, an
            # hour or more later (the record moves to its new hour).
            held = self._reserve(user, key, 90_000)
            self.clock.set(when + TTL + timedelta(seconds=1))
            self.budget.app.reap_expired()
            if self.rng.random() < 0.5:
                self.clock.set(when + timedelta(minutes=self.rng.randrange(20, 200)))
                self._settle(held, self.rng.choice([None, self.rng.randrange(1, 80_000)]))

    def run(self, start: datetime, span: timedelta, count: int) -> None:
        instants = sorted(
            start + timedelta(seconds=self.rng.randrange(int(span.total_seconds())))
            for _ in range(count)
        )
        for when in instants:
            self.attempt(when)


def ledger(budget) -> list[UsageRow]:  # type: ignore[no-untyped-def]
    with budget.app.sessions.begin() as session:
        rows = list(session.scalars(select(UsageRow)))
        session.expunge_all()
    return rows


def in_range(rows: list[UsageRow], start: datetime, end: datetime) -> list[UsageRow]:
    return [r for r in rows if start <= r.created_at < end]


def expected_figures(rows: list[UsageRow]) -> dict[str, object]:
    """The figures GetSystemMetrics must report, straight from records."""
    served = ("generated", "cache_hit_exact", "cache_hit_similar")
    outcomes: Counter[str] = Counter()
    outcome_cost: Counter[str] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    spend: dict[tuple[str, str, int], list[int]] = {}
    for r in rows:
        outcomes[r.outcome] += 1
        outcome_cost[r.outcome] += r.cost_micros
        if r.outcome not in served:
            failures[(r.outcome, error_reason(r.error_message))] += 1
        sums = spend.setdefault((r.model, r.size, quality.to_proto(r.quality)), [0, 0, 0])
        sums[0] += 1
        sums[1] += r.cost_micros
        sums[2] += r.cost_saved_micros
    cost = sum(r.cost_micros for r in rows)
    return {
        "generations": len(rows),
        "total_cost_micros": cost,
        "average": cost // len(rows) if rows else 0,
        "successful": sum(1 for r in rows if r.success),
        "exact_hits": sum(1 for r in rows if r.cache_hit == "exact"),
        "similar_hits": sum(1 for r in rows if r.cache_hit == "similar"),
        "cost_saved_micros": sum(r.cost_saved_micros for r in rows),
        "outcomes": {o: (n, outcome_cost[o]) for o, n in outcomes.items()},
        "failures": dict(failures),
        "spend": {k: tuple(v) for k, v in spend.items()},
    }


def reported_figures(response) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {
        "generations": response.generations,
        "total_cost_micros": response.total_cost_micros,
        "average": response.average_cost_per_generation_micros,
        "successful": response.successful_generations,
        "exact_hits": response.cache.exact_hits,
        "similar_hits": response.cache.similar_hits,
        "cost_saved_micros": response.cache.cost_saved_micros,
        "outcomes": {o.outcome: (o.count, o.cost_micros) for o in response.outcomes},
        "failures": {(f.outcome, f.reason): f.count for f in response.failures},
        "spend": {
            (s.model, s.size, s.quality): (s.generations, s.cost_micros, s.cost_saved_micros)
            for s in response.spend
        },
    }
