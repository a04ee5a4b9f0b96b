"""The ledger's values the system rollups are keyed by (migration 0009), as
SQL expressions over budget_usage_records: a record's UTC hour, day and
month, its shard and its error reason. Both the metrics' ledger edges and
reconciliation read the ledger through these, so they key it as the
triggers do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Date,
    Integer,
    Table,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from services.budget.domain.system_metrics import SYSTEM_SHARDS
from services.budget.store.models import (
    SystemOutcomesRow,
    SystemPromptsRow,
    SystemSpendRow,
    SystemTotalsRow,
    UsageRow,
    UserPromptsRow,
    UserTotalsRow,
    table,
)
from services.common.db import UtcDateTime

USAGE = table(UsageRow)
SPEND = table(SystemSpendRow)
OUTCOMES = table(SystemOutcomesRow)
TOTALS = table(SystemTotalsRow)
USERS = table(UserTotalsRow)
SYSTEM_PROMPTS = table(SystemPromptsRow)
USER_PROMPTS = table(UserPromptsRow)


@dataclass(frozen=True)
class LedgerKeys:
    hour: ColumnElement[Any]
    day_start: ColumnElement[Any]
    month_start: ColumnElement[Any]
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
            month_start=func.timezone("UTC", func.date_trunc("month", utc)),
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
        month_start=func.strftime("%Y-%m-01 00:00:00.000000", u.created_at, type_=UtcDateTime()),
        day=func.date(u.created_at, type_=Date()),
        month=func.strftime("%Y-%m-01", u.created_at, type_=Date()),
        shard=shard,
        reason=literal_column(
            f"(CASE WHEN {colon} BETWEEN 2 AND 65 AND {word} GLOB '[A-Z]*' "
            f"AND {word} NOT GLOB '*[^A-Z0-9_]*' THEN {word} ELSE '' END)"
        ),
    )


# -- reconciliation: each rollup against the ledger it rolls up


def _measures(*names: str) -> list[tuple[str, ColumnElement[Any]]]:
    """Rollup measures and the ledger aggregate each must equal."""
    u = USAGE.c
    aggregates: dict[str, ColumnElement[Any]] = {
        "generations": func.count(),
        "cost_micros": func.coalesce(func.sum(u.cost_micros), 0),
        "cost_saved_micros": func.coalesce(func.sum(u.cost_saved_micros), 0),
        "successful": func.count().filter(u.success.is_(True)),
        "exact_hits": func.count().filter(u.cache_hit == "exact"),
        "similar_hits": func.count().filter(u.cache_hit == "similar"),
        "input_tokens": func.coalesce(func.sum(u.input_tokens), 0),
        "cached": func.count().filter(u.cached.is_(True)),
        "generated": func.count().filter(u.outcome == "generated"),
        "generated_cost_micros": func.coalesce(
            func.sum(u.cost_micros).filter(u.outcome == "generated"), 0
        ),
    }
    return [(name, aggregates[name]) for name in names]


@dataclass(frozen=True)
class RollupCheck:
    """One rollup table, the ledger keyed and aggregated as its triggers do
    (a union of one select a kind), and the columns of its key."""

    table: Table
    ledger: CompoundSelect[Any]
    key: tuple[str, ...]
    measures: tuple[str, ...]


def _check(
    rollup: Table,
    kinds: dict[str, ColumnElement[Any]],
    keys: list[tuple[str, Any]],
    since: Any,
    *only: ColumnElement[bool],
) -> RollupCheck:
    measures = _measures(*(c.name for c in rollup.columns if not c.primary_key))
    selects = []
    for kind, start in kinds.items():
        group = [start, *(expression for _, expression in keys)]
        statement = select(
            literal(kind).label("kind"),
            start.label("start"),
            *(expression.label(name) for name, expression in keys),
            *(aggregate.label(name) for name, aggregate in measures),
        ).group_by(*group)
        if only:
            statement = statement.where(*only)
        if since is not None:
            statement = statement.where(USAGE.c.created_at >= since)
        selects.append(statement)
    names = ("kind", "start", *(name for name, _ in keys))
    return RollupCheck(rollup, union_all(*selects), names, tuple(n for n, _ in measures))


def month_floor(since: datetime) -> datetime:
    """The first instant of since's UTC month: what a check from since covers."""
    return since.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def rollup_checks(dialect: str, since: datetime | None) -> list[RollupCheck]:
    """The rollups of migrations 0009 (with 0015's spend measures) and 0013,
    from since's UTC month on (None: all)."""
    k, u = ledger_keys(dialect), USAGE.c
    floor = month_floor(since) if since else None
    times = {"hour": k.hour, "day": k.day_start}
    periods = times | {"month": k.month_start}
    return [
        _check(SPEND, periods, [("shard", k.shard), *((n, u[n]) for n in _SPEND_KINDS)], floor),
        _check(
            OUTCOMES,
            periods,
            [("shard", k.shard), ("outcome", u.outcome), ("reason", k.reason)],
            floor,
        ),
        _check(TOTALS, times, [("shard", k.shard)], floor),
        _check(USERS, {"day": k.day, "month": k.month}, [("user_id", u.user_id)], floor),
        *_prompt_checks(k, floor),
    ]


def _prompt_checks(k: LedgerKeys, floor: datetime | None) -> list[RollupCheck]:
    """Migration 0013's prompt rollups: generated records whose prompt the
    ledger knows, by model and custom (1: the caller's prompt)."""
    u = USAGE.c
    keys = [("model", u.model), ("custom", case((u.custom_prompt.is_(True), 1), else_=0))]
    only = (u.outcome == "generated", u.custom_prompt.is_not(None))
    times = {"hour": k.hour, "day": k.day_start}
    return [
        _check(SYSTEM_PROMPTS, times, [("shard", k.shard), *keys], floor, *only),
        _check(USER_PROMPTS, {"day": k.day}, [("user_id", u.user_id), *keys], floor, *only),
    ]


_SPEND_KINDS = ("model", "size", "quality")


def rollup_mismatches(
    session: Session, check: RollupCheck, since: datetime | None, limit: int
) -> list[Any]:
    """Rollup rows that differ from the ledger, and ledger groups without a
    row (columns kind, start, user_id or "", rolled_generations,
    ledger_generations, rolled_cost, ledger_cost)."""
    ledger = check.ledger.subquery("ledger")
    rolled_select = select(check.table)
    if since is not None:
        floor = month_floor(since)
        start = check.table.c.start
        rolled_select = rolled_select.where(
            start >= (floor.date() if isinstance(start.type, Date) else floor)
        )
    rolled = rolled_select.subquery("rolled")
    same_key = and_(*(ledger.c[name] == rolled.c[name] for name in check.key))
    user = (lambda source: source.c.user_id) if "user_id" in check.key else (lambda _: literal(""))
    differs = or_(*(rolled.c[name] != func.coalesce(ledger.c[name], 0) for name in check.measures))
    counted = (
        select(
            rolled.c.kind,
            rolled.c.start,
            user(rolled).label("user_id"),
            rolled.c.generations.label("rolled_generations"),
            func.coalesce(ledger.c.generations, 0).label("ledger_generations"),
            rolled.c.cost_micros.label("rolled_cost"),
            func.coalesce(ledger.c.cost_micros, 0).label("ledger_cost"),
        )
        .select_from(rolled.outerjoin(ledger, same_key))
        .where(differs)
    )
    missing = select(
        ledger.c.kind,
        ledger.c.start,
        user(ledger).label("user_id"),
        literal(0).label("rolled_generations"),
        ledger.c.generations.label("ledger_generations"),
        literal(0).label("rolled_cost"),
        ledger.c.cost_micros.label("ledger_cost"),
    ).where(~exists(select(rolled.c.kind).where(same_key)))
    return list(session.execute(union_all(counted, missing).limit(limit)).all())
