"""The monitoring contract: both services, started for real, export every
metric the alerting rules and the dashboard query (services/monitoring/), the
counters move as the calls did, and no label value is a user id."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as pb

from services.common.errors import DeadlineExceeded
from services.image.domain.accounting import Usage
from services.image.domain.images import GeneratedImage
from services.image.domain.settlement import Settlement
from tests.support.budget_server import ManualClock
from tests.support.image_server import running_pair

MONITORING = Path(__file__).resolve().parent.parent / "services" / "monitoring"
RULES = MONITORING / "prometheus-rules.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\b(recipeimage_[a-z0-9_]+|up)\b")
# Series Prometheus itself makes for every target.
SCRAPE_SERIES = {"up"}

USER = "monitoring-user-7f3a9c"
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
RECIPE = pb.Recipe(
    recipe_id="r-soup",
    title="Broccoli Soup with Coconut Milk",
    ingredients=["1 can of coconut milk", "2 heads of broccoli"],
    instructions=["Simmer the broccoli in the coconut milk.", "Puree."],
)


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every series name the registry can export, whether or not it has samples
    yet: counters as name_total, histograms as _bucket, _sum and _count."""
    names: set[str] = set()
    for family in registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count")}
        else:
            names.add(family.name)
    return names


def queried_names() -> set[str]:
    """The metric names in the rules' expressions and the dashboard's queries."""
    rules = RULES.read_text()
    expressions = re.findall(r"expr: \|?\n?((?:.*\n)*?)\s+(?:for|labels):", rules)
    dashboard = json.loads(DASHBOARD.read_text())
    expressions += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(expressions) > 20
    return {name for expression in expressions for name in METRIC_NAME.findall(expression)}


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The sum of name's samples whose labels include these."""
    return sum(
        v
        for (sample, sample_labels), v in samples(registry).items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def pair(database_url: str, authenticator, clock: ManualClock):  # type: ignore[no-untyped-def]
    with running_pair(database_url, authenticator, clock=clock) as running:
        yield running


def test_rules_and_dashboard_query_only_metrics_the_services_export(pair) -> None:  # type: ignore[no-untyped-def]
    exported = (
        exported_names(pair.budget.app.metrics.registry)
        | exported_names(pair.app.metrics.registry)
        | SCRAPE_SERIES
    )
    queried = queried_names()
    assert "recipeimage_image_settlements_pending" in queried
    assert sorted(queried - exported) == []


def test_counters_follow_a_generation_a_hit_a_refusal_and_an_expiry(pair, tokens) -> None:  # type: ignore[no-untyped-def]
    budget, image = pair.budget.app.metrics.registry, pair.app.metrics.registry
    request = pb.GenerateImageRequest(recipe=RECIPE)

    generated = pair.image.GenerateImage(request, metadata=tokens.user(USER))
    hit = pair.image.GenerateImage(request, metadata=tokens.user(USER))
    assert hit.source == pb.IMAGE_SOURCE_CACHE_EXACT
    with pytest.raises(grpc.RpcError) as refused:
        pair.budget.stub.ReserveBudget(
            budget_pb.ReserveBudgetRequest(
                user_id=USER, amount_micros=100_000_000, idempotency_key="too-much"
            ),
            metadata=tokens.service(),
        )
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    held = pair.budget.stub.ReserveBudget(
        budget_pb.ReserveBudgetRequest(user_id=USER, amount_micros=1_000, idempotency_key="held"),
        metadata=tokens.service(),
    )
    assert held.reservation.amount_micros == 1_000

    # ImageService: one miss then one exact hit; one generation at the provider.
    assert value(image, "recipeimage_image_cache_misses_total") == 1
    assert value(image, "recipeimage_image_cache_hits_total", kind="exact") == 1
    assert value(image, "recipeimage_image_cache_hits_total", kind="similar") == 0
    assert value(image, "recipeimage_image_cache_lookup_seconds_count") == 2
    assert value(image, "recipeimage_image_provider_seconds_count") == 1
    assert value(image, "recipeimage_image_provider_errors_total") == 0
    assert value(image, "recipeimage_image_settlements_pending") == 0
    assert value(image, "recipeimage_image_settlement_oldest_age_seconds") == 0
    assert value(image, "recipeimage_rpc_total", method="GenerateImage", code="OK") == 2

    # BudgetService: the money committed is the generation's cost, saved the hit's.
    assert value(budget, "recipeimage_spend_micros_total") == generated.cost_micros > 0
    assert value(budget, "recipeimage_cost_saved_micros_total") == hit.cost_saved_micros
    assert (
        value(
            budget,
            "recipeimage_refusals_total",
            method="ReserveBudget",
            reason="PER_GENERATION_LIMIT_EXCEEDED",
        )
        == 1
    )
    assert value(budget, "recipeimage_reservations_held") == 1
    assert value(budget, "recipeimage_held_micros") == 1_000
    for registry in (budget, image):
        assert value(registry, "recipeimage_db_pool_size") >= 1
        assert value(registry, "recipeimage_db_pool_checked_out") == 0

    pair.budget.app.reap_expired(T0 + timedelta(days=1))
    assert value(budget, "recipeimage_reservations_expired_total") == 1
    assert value(budget, "recipeimage_reservations_held") == 0

    for registry in (budget, image):
        label_values = {v for _, labels in samples(registry) for _, v in labels}
        assert not {v for v in label_values if USER in v}


def test_the_settlement_outbox_is_gauged_at_each_scrape(pair, clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    image, settler = pair.app.metrics.registry, pair.app.use_cases.settler
    assert value(image, "recipeimage_image_settlements_pending") == 0
    usage = Usage("req-1", USER, "r-soup", "a prompt", "1024x1024", "medium", "m", "offline")
    queued = settler.queue_alone(Settlement.release("no-such-reservation", usage))
    assert queued.row_id is not None
    clock.advance(timedelta(seconds=90))
    assert value(image, "recipeimage_image_settlements_pending") == 1
    assert value(image, "recipeimage_image_settlement_oldest_age_seconds") == 90
    assert value(image, "recipeimage_image_settlements_abandoned") == 0
    # BudgetService has no such reservation: refused for good, kept as abandoned.
    pair.app.settle_pending(clock.now())
    assert value(image, "recipeimage_image_settlements_pending") == 0
    assert value(image, "recipeimage_image_settlements_abandoned") == 1
    label_values = {v for _, labels in samples(image) for _, v in labels}
    assert not {v for v in label_values if USER in v}


class TimingOutProvider:
    name = "offline"

    def generate(
        self, prompt: str, model: str, size: str, quality: str, *, end_user: str = ""
    ) -> GeneratedImage:
        raise DeadlineExceeded("the provider did not answer in time")

    def close(self) -> None:
        return None


def test_provider_failures_are_counted_by_reason(database_url: str, authenticator, tokens) -> None:  # type: ignore[no-untyped-def]
    with running_pair(database_url, authenticator, provider=TimingOutProvider()) as failing:
        with pytest.raises(grpc.RpcError) as failed:
            failing.image.GenerateImage(
                pb.GenerateImageRequest(recipe=RECIPE), metadata=tokens.user(USER)
            )
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        image = failing.app.metrics.registry
        assert (
            value(image, "recipeimage_image_provider_errors_total", reason="PROVIDER_TIMEOUT") == 1
        )
        assert value(image, "recipeimage_image_provider_seconds_count") == 1
        assert (
            value(
                image,
                "recipeimage_refusals_total",
                method="GenerateImage",
                reason="PROVIDER_TIMEOUT",
            )
            == 1
        )
        # The reservation was released: nothing held, nothing committed.
        budget = failing.budget.app.metrics.registry
        assert value(budget, "recipeimage_held_micros") == 0
        assert value(budget, "recipeimage_spend_micros_total") == 0
