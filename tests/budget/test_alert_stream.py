"""WatchAlerts over real gRPC on SQLite and PostgreSQL: alerts as they are
raised, resumed from a cursor without losing or repeating one, a user's own
only, silenced ones never; and on PostgreSQL an alert committed late (a
lower id committed after a higher one) is still sent."""

from __future__ import annotations

import queue
import threading
import time

import grpc
import pytest
from recipeimage.budget.v1 import alerts_pb2 as apb

from services.budget.domain.alerts import Alert, AlertWindow, Severity
from services.budget.domain.limits import TierLimits
from services.budget.store.unit_of_work import BudgetStore
from tests.budget.alerts_support import spend
from tests.budget.conftest import T0
from tests.support.budget_server import running_budget, tiers

SMALL = tiers(free=TierLimits(100_000, 1_000_000, 100_000))
FROM_THE_START = "0.0"


@pytest.fixture
def budget(database_url, authenticator, clock):  # type: ignore[no-untyped-def]
    with running_budget(
        database_url, authenticator, clock=clock, tiers=SMALL, alert_watch_poll_seconds=0.1
    ) as running:
        yield running


class Reader:
    """Reads a WatchAlerts stream in a thread, into a queue."""

    def __init__(self, budget, metadata, **request: object) -> None:  # type: ignore[no-untyped-def]
        self.call = budget.stub.WatchAlerts(
            apb.WatchAlertsRequest(**request), metadata=metadata, timeout=30
        )
        self.received: queue.Queue[apb.WatchAlertsResponse | grpc.RpcError] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.received.put(message)
        except grpc.RpcError as error:
            self.received.put(error)

    def take(self, count: int) -> list[apb.WatchAlertsResponse]:
        taken = []
        for _ in range(count):
            item = self.received.get(timeout=10)
            assert not isinstance(item, grpc.RpcError), item
            taken.append(item)
        return taken

    def nothing_more(self, wait: float = 0.5) -> bool:
        time.sleep(wait)
        return self.received.empty()

    def close(self) -> None:
        self.call.cancel()


def users_of(messages: list[apb.WatchAlertsResponse]) -> list[str]:
    return [m.alert.user_id for m in messages]


def test_a_stream_resumes_from_its_cursor_with_nothing_lost_or_repeated(budget, tokens) -> None:
    for user in ("u1", "u2", "u3"):
        spend(budget, tokens, 50_000, user=user)
    first = Reader(budget, tokens.admin(), cursor=FROM_THE_START)
    got = first.take(2)
    first.close()
    assert users_of(got) == ["u1", "u2"]
    for user in ("u4", "u5"):
        spend(budget, tokens, 50_000, user=user)

    resumed = Reader(budget, tokens.admin(), cursor=got[-1].cursor)
    assert users_of(resumed.take(3)) == ["u3", "u4", "u5"]
    assert resumed.nothing_more()
    spend(budget, tokens, 50_000, user="u6")  # sent as it is raised
    live = resumed.take(1)[0]
    assert (live.alert.user_id, live.alert.rule) == ("u6", "user_limit_50")
    resumed.close()


def test_a_stream_without_a_cursor_starts_from_now(budget, tokens) -> None:
    spend(budget, tokens, 50_000, user="u1")
    reader = Reader(budget, tokens.admin())
    time.sleep(0.5)  # the stream has started
    spend(budget, tokens, 50_000, user="u2")
    assert users_of(reader.take(1)) == ["u2"]
    assert reader.nothing_more()
    reader.close()


def test_a_user_watches_only_its_own_unsilenced_alerts(budget, tokens) -> None:
    budget.stub.SilenceAlerts(
        apb.SilenceAlertsRequest(rule="user_limit_50"), metadata=tokens.user("u1")
    )
    reader = Reader(budget, tokens.user("u1"), cursor=FROM_THE_START)
    spend(budget, tokens, 50_000, user="u1")  # silenced: recorded, not sent
    spend(budget, tokens, 50_000, user="u2")  # someone else's
    spend(budget, tokens, 30_000, user="u1")  # 80%
    got = reader.take(1)
    assert [(m.alert.user_id, m.alert.rule) for m in got] == [("u1", "user_limit_80")]
    assert reader.nothing_more()
    reader.close()


@pytest.mark.parametrize(
    ("metadata", "request_fields", "code"),
    [
        ("user", {"user_id": "u2"}, grpc.StatusCode.PERMISSION_DENIED),
        ("user", {"system": True}, grpc.StatusCode.PERMISSION_DENIED),
        ("service", {}, grpc.StatusCode.PERMISSION_DENIED),
        ("admin", {"cursor": "not-a-cursor"}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_watch_alerts_refuses_before_streaming(
    budget, tokens, metadata, request_fields, code
) -> None:
    caller = {"user": tokens.user("u1"), "service": tokens.service(), "admin": tokens.admin()}
    call = budget.stub.WatchAlerts(
        apb.WatchAlertsRequest(**request_fields), metadata=caller[metadata], timeout=10
    )
    with pytest.raises(grpc.RpcError) as raised:
        next(call)
    assert raised.value.code() == code


def test_a_replica_serves_only_so_many_streams(database_url, authenticator, tokens) -> None:
    with running_budget(database_url, authenticator, alert_max_watchers=1) as budget:
        first = Reader(budget, tokens.admin())
        time.sleep(0.5)  # the first stream has started
        second = budget.stub.WatchAlerts(
            apb.WatchAlertsRequest(), metadata=tokens.admin(), timeout=10
        )
        with pytest.raises(grpc.RpcError) as raised:
            next(second)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.close()
        time.sleep(1.5)  # the first stream ends at its next poll
        third = Reader(budget, tokens.admin())
        assert third.nothing_more()  # streaming, not refused
        third.close()


def _alert(user: str) -> Alert:
    return Alert(
        rule="unusual_spend",
        subject=user,
        window=AlertWindow.NONE,
        period_key="2026-03-10",
        severity=Severity.WARNING,
        message="late",
        raised_at=T0,
    )


@pytest.mark.postgres
def test_an_alert_committed_after_a_later_one_is_still_sent(budget, tokens, database_url) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: ids come in commit order")
    store = BudgetStore(budget.app.sessions)
    reader = Reader(budget, tokens.admin(), cursor=FROM_THE_START)
    inserted = threading.Event()
    release = threading.Event()

    def slow_transaction() -> None:
        with store.transaction() as tx:
            tx.alerts.insert_once(_alert("slow"))  # takes the lower id
            inserted.set()
            release.wait(10)

    slow = threading.Thread(target=slow_transaction)
    slow.start()
    assert inserted.wait(10)
    spend(budget, tokens, 50_000, user="fast")  # a higher id, committed first
    # Not sent while an earlier transaction could still add a lower id.
    assert reader.nothing_more(1.0)
    release.set()
    slow.join()
    assert sorted(users_of(reader.take(2))) == ["fast", "slow"]
    reader.close()
