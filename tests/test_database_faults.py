"""PostgreSQL connections killed under load (pg_terminate_backend): every call
either succeeds or fails cleanly with UNAVAILABLE, never INTERNAL; nothing is
half-applied, the services recover by themselves, and the ledger reconciles."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest
from recipeimage.budget.v1 import budget_service_pb2 as budget_pb
from recipeimage.image.v1 import image_service_pb2 as image_pb
from sqlalchemy.engine import make_url

from tests.support.image_server import running_pair

pytestmark = pytest.mark.postgres
CALLS = 120


def _kill_connections_until(stop: threading.Event, url: str) -> int:
    """Terminate every other connection to the test database, again and again."""
    parsed = make_url(url)
    database = parsed.database
    admin = parsed.set(drivername="postgresql", database="postgres")
    killed = 0
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
            killed += sum(1 for (done,) in rows if done)
            time.sleep(0.3)
    return killed


@pytest.fixture
def postgres_url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("connections are killed on PostgreSQL only")
    return database_url


def test_killed_connections_answer_unavailable_or_succeed_and_reconcile(
    postgres_url: str, authenticator, tokens
) -> None:
    with running_pair(postgres_url, authenticator) as pair:

        def generate(index: int) -> grpc.StatusCode:
            recipe = image_pb.Recipe(title=f"Soup number {index % 30}", ingredients=["salt"])
            try:
                pair.image.GenerateImage(
                    image_pb.GenerateImageRequest(recipe=recipe, request_id=f"r{index}"),
                    metadata=tokens.user(f"u{index % 7}"),
                    timeout=30,
                )
                return grpc.StatusCode.OK
            except grpc.RpcError as error:
                return error.code()

        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=9) as pool:
            killer = pool.submit(_kill_connections_until, stop, postgres_url)
            codes = list(pool.map(generate, range(CALLS)))
            stop.set()
            assert killer.result() > 0
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
        assert codes.count(grpc.StatusCode.OK) > 0

        # Recovered by itself: a fresh call succeeds.
        reply = pair.image.GenerateImage(
            image_pb.GenerateImageRequest(recipe=image_pb.Recipe(title="After the storm")),
            metadata=tokens.user("u-after"),
        )
        assert reply.image.image_id
        pair.app.settle_pending()
        # Whatever a killed connection left held, the reaper frees and records.
        later = datetime.now(UTC) + timedelta(
            seconds=2 * pair.budget.app.settings.reservation_ttl_seconds
        )
        pair.budget.app.reap_expired(later)
        check = pair.budget.stub.ReconcileLedger(
            budget_pb.ReconcileLedgerRequest(), metadata=tokens.admin()
        )
        assert check.consistent, check.differences
