"""ExportUsage: every record of the range in ascending id, in messages that
carry a cursor; a stream killed midway resumes from its last cursor without
losing or repeating a record; one user's or all; admin only; bad input."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from recipeimage.budget.v1 import management_tools_pb2 as tpb
from sqlalchemy import select

from services.budget.domain.export import MESSAGE_CHARS, ExportedRecord, message_parts
from services.budget.domain.usage import Outcome, Usage, completed
from services.budget.store.models import UsageRow
from services.budget.store.usage import UsageStore
from services.common.db import dialect_name
from services.common.timestamps import to_proto
from tests.budget.conftest import T0
from tests.budget.tools_support import bad_fields, only_admins, spend

RECORDS = 2_600  # more than two database chunks (1,000 rows) and many messages


def store_ledger(budget, count: int = RECORDS) -> None:  # type: ignore[no-untyped-def]
    """count cache hits of u1, u2 and u3 in turn, one a minute from T0."""
    with budget.app.sessions.begin() as session:
        store = UsageStore(session, dialect_name(session))
        for number in range(count):
            store.store_usage(
                completed(
                    Usage(prompt=f"dish {number}", model="gpt-image-1.5", size="1024x1024"),
                    default_outcome=Outcome.CACHE_HIT_EXACT,
                    created_at=T0 + timedelta(minutes=number),
                    request_id=f"r{number}",
                    user_id=f"u{number % 3 + 1}",
                )
            )


def ledger_ids(budget, user: str = "") -> list[int]:  # type: ignore[no-untyped-def]
    statement = select(UsageRow.id).order_by(UsageRow.id)
    if user:
        statement = statement.where(UsageRow.user_id == user)
    with budget.app.sessions.begin() as session:
        return list(session.scalars(statement))


def export(budget, tokens, **fields):  # type: ignore[no-untyped-def]
    for name in ("start_time", "end_time"):
        if name in fields:
            fields[name] = to_proto(fields[name])
    return budget.stub.ExportUsage(tpb.ExportUsageRequest(**fields), metadata=tokens.admin())


def ids(messages) -> list[int]:  # type: ignore[no-untyped-def]
    return [record.record_id for message in messages for record in message.records]


def test_the_export_streams_every_record_in_id_order(budget, tokens) -> None:
    store_ledger(budget)
    spend(budget, tokens, 40_000, "paid")  # a generated record among the hits
    messages = list(export(budget, tokens))
    assert ids(messages) == ledger_ids(budget)
    assert len(ledger_ids(budget)) == RECORDS + 1
    assert all(0 < len(m.records) <= 500 and m.cursor for m in messages)
    first, paid = messages[0].records[0], messages[-1].records[-1]
    assert (first.request_id, first.user_id, first.outcome, first.cached) == (
        "r0",
        "u1",
        "cache_hit_exact",
        True,
    )
    assert first.create_time == to_proto(T0)
    assert (paid.request_id, paid.outcome, paid.cost_micros) == ("paid", "generated", 40_000)


def test_a_killed_export_resumes_from_its_cursor(budget, tokens) -> None:
    store_ledger(budget)
    stream = export(budget, tokens)
    received = [next(stream), next(stream), next(stream)]
    stream.cancel()
    with pytest.raises(grpc.RpcError) as raised:
        list(stream)
    assert raised.value.code() == grpc.StatusCode.CANCELLED
    resumed = list(export(budget, tokens, cursor=received[-1].cursor))
    assert ids(received) + ids(resumed) == ledger_ids(budget)
    # Resuming from the last message's cursor sends nothing more.
    assert list(export(budget, tokens, cursor=resumed[-1].cursor)) == []


def test_one_users_records_in_a_time_range(budget, tokens) -> None:
    store_ledger(budget, 30)
    start, end = T0 + timedelta(minutes=3), T0 + timedelta(minutes=20)
    messages = list(export(budget, tokens, user_id="u2", start_time=start, end_time=end))
    # u2's records are numbers 1, 4, 7 ...; minutes 3 to 19 hold 4 ... 19.
    assert [r.request_id for m in messages for r in m.records] == [f"r{n}" for n in range(4, 20, 3)]
    first = list(export(budget, tokens, user_id="u2"))
    resumed = list(export(budget, tokens, user_id="u2", cursor=first[0].cursor))
    assert resumed == []
    assert ids(first) == ledger_ids(budget, "u2")
    assert list(export(budget, tokens, user_id="nobody")) == []


def test_bad_input_and_access(budget, tokens) -> None:
    store_ledger(budget, 3)
    cursor = list(export(budget, tokens, user_id="u1"))[0].cursor
    assert bad_fields(lambda: list(export(budget, tokens, user_id="u2", cursor=cursor))) == [
        "cursor"
    ]
    assert bad_fields(lambda: list(export(budget, tokens, cursor="forged"))) == ["cursor"]
    assert bad_fields(lambda: list(export(budget, tokens, start_time=T0, end_time=T0))) == [
        "end_time"
    ]
    assert bad_fields(lambda: list(export(budget, tokens, user_id="u" * 201))) == ["user_id"]
    only_admins(
        tokens,
        lambda metadata: list(budget.stub.ExportUsage(tpb.ExportUsageRequest(), metadata=metadata)),
    )


def test_messages_stay_small_with_long_prompts() -> None:
    records = [ExportedRecord(n, Usage(prompt="p" * 32_000)) for n in range(100)]
    parts = list(message_parts(records))
    assert [r.id for part in parts for r in part] == list(range(100))
    assert all(sum(len(r.usage.prompt) for r in part) <= MESSAGE_CHARS for part in parts)
    assert len(parts) > 1
    assert [len(p) for p in message_parts(records[:1])] == [1]
