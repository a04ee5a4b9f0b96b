"""The ledger's values the system rollups are keyed by (migration 0008), as
SQL expressions over budget_usage_records: a record's UTC hour, day and
month, its shard and its error reason. Both the metrics' ledger edges and
reconciliation read the ledger through these, so they key it as the
triggers do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Date, Integer, case, cast, func, literal, literal_column
from sqlalchemy.sql.elements import ColumnElement

from services.budget.domain.system_metrics import SYSTEM_SHARDS
from services.budget.store.models import UsageRow, table
from services.common.db import UtcDateTime

USAGE = table(UsageRow)


@dataclass(frozen=True)
class LedgerKeys:
    hour: ColumnElement[Any]
    day_start: ColumnElement[Any]
    day: ColumnElement[Any]
    month: ColumnElement[Any]
    shard: ColumnElement[Any]
    reason: ColumnElement[Any]


def ledger_keys(dialect: str) -> LedgerKeys:
    u = USAGE.c
    shard = cast(u.id % SYSTEM_SHARDS, Integer)
    if dialect == "postgresql":
        utc = func.timezone("UTC", u.created_at)
        return LedgerKeys(
            hour=func.timezone("UTC", func.date_trunc("hour", utc)),
            day_start=func.timezone("UTC", func.date_trunc("day", utc)),
            day=cast(utc, Date),
            month=cast(func.date_trunc("month", utc), Date),
            shard=shard,
            reason=case(
                (
                    u.error_message.regexp_match("^[A-Z][A-Z0-9_]{0,63}:"),
                    func.split_part(u.error_message, ":", 1),
                ),
                else_=literal(""),
            ),
        )
    message = "budget_usage_records.error_message"
    colon = f"instr({message}, ':')"
    word = f"substr({message}, 1, {colon} - 1)"
    return LedgerKeys(
        hour=func.strftime("%Y-%m-%d %H:00:00.000000", u.created_at, type_=UtcDateTime()),
        day_start=func.strftime("%Y-%m-%d 00:00:00.000000", u.created_at, type_=UtcDateTime()),
        day=func.date(u.created_at, type_=Date()),
        month=func.strftime("%Y-%m-01", u.created_at, type_=Date()),
        shard=shard,
        reason=literal_column(
            f"(CASE WHEN {colon} BETWEEN 2 AND 65 AND {word} GLOB '[A-Z]*' "
            f"AND {word} NOT GLOB '*[^A-Z0-9_]*' THEN {word} ELSE '' END)"
        ),
    )
