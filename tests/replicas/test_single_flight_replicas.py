"""Concurrent identical GenerateImage misses spread with round_robin over two
ImageService processes, which reach two BudgetService processes the same
way, all on one PostgreSQL database: one generation at OpenAI, one charge."""

from __future__ import annotations

import time

from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as pb

from tests.image.conftest import SOUP, generate_request
from tests.replicas.conftest import REPLICAS
from tests.replicas.reading import ledger, reservations
from tests.support.fake_openai import FakeOpenAI
from tests.support.replicas import running_replicas

pytestmark = REPLICAS

CALLERS = 8


def test_identical_misses_on_two_replicas_make_one_generation_and_one_charge(
    postgres_url, tmp_path, fake: FakeOpenAI, tokens
) -> None:
    held = fake.held()
    fake.script(held)
    with running_replicas(postgres_url, tmp_path, fake) as replicas:
        futures = [
            replicas.image.GenerateImage.future(
                generate_request(SOUP), metadata=tokens.user(f"u{i}"), timeout=60
            )
            for i in range(CALLERS)
        ]
        assert fake.wait_for_requests(1, timeout=30)
        time.sleep(1.0)  # every other miss is in by now, waiting on the lease
        assert len(fake.requests) == 1
        assert held.gate is not None
        held.gate.set()
        replies = [future.result() for future in futures]

        assert sorted(reply.source for reply in replies) == [pb.IMAGE_SOURCE_GENERATED] + [
            pb.IMAGE_SOURCE_CACHE_EXACT
        ] * (CALLERS - 1)
        assert len({reply.image.image_id for reply in replies}) == 1
        assert len(fake.requests) == 1
        # Both ImageService replicas answered some of the calls.
        served = [replicas.rpc_count(image, "GenerateImage") for image in replicas.images]
        assert sum(served) == CALLERS and min(served) > 0, served

        records = ledger(postgres_url)
        charged = [record for record in records if record[3] > 0]
        assert [record[2] for record in charged] == ["generated"]
        assert sorted(record[2] for record in records) == ["cache_hit_exact"] * (CALLERS - 1) + [
            "generated"
        ]
        assert [state for _, _, state in reservations(postgres_url)] == ["committed"]
        check = replicas.budget.ReconcileLedger(
            budget_pb.ReconcileLedgerRequest(), metadata=tokens.admin()
        )
        assert check.consistent, check.differences
