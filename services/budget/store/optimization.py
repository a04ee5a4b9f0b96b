"""Cost optimization's reads: the facts of one user's (or every user's) range.

- A user's figures by model, size, quality and outcome come from
  GetUsageStats' statement (usage_summary: the daily rollup for whole UTC
  days, the ledger for the edges), and its generated images by setting from
  the same facts. Every user's come from the system rollups GetSystemMetrics
  reads (spend by setting, outcomes; whole UTC months, days and hours, the
  ledger's partial hours at the edges), whatever the number of users.
- What needs single records (a dish generated before, a recipe generated
  again, an image never served again, a retry after a failure) is one pass
  over the ledger's index range of the scope, aggregated by the database:
  a dish's earlier generation is a lookup of budget_dish_first_generations
  (migration 0016), an image's hit a probe of the hits' index, repeats and
  retries one window over each user's attempts of each recipe. Nothing is
  loaded row by row. A user's pass costs its records, whatever the
  system's size; every user's costs every record of the range.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Executable,
    Select,
    and_,
    case,
    collate,
    exists,
    false,
    func,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.orm import Session

from services.budget.domain.optimization import (
    QUALITY_RANKS,
    CachingFacts,
    OptimizationFacts,
    SettingGroup,
    WasteFacts,
)
from services.budget.domain.optimization_system import system_summary
from services.budget.domain.system_metrics import FactRow, figure_parts
from services.budget.domain.usage import Outcome, UsageKind, UsageSummary
from services.budget.store.models import DishFirstRow, UsageRow, table
from services.budget.store.optimization_prompts import load_prompt_groups
from services.budget.store.system_metrics import SystemMetricsQueries
from services.budget.store.usage_summary import load_usage_summary, range_facts, rollup_split
from services.common.db import dialect_name

USAGE = table(UsageRow)
DISH_FIRST = table(DishFirstRow)
# Every user's range as (spend facts, outcome facts): see load_system_parts.
SystemParts = tuple[list[FactRow], list[FactRow]]
GENERATED = Outcome.GENERATED.value
RETRIED_AFTER = (Outcome.FAILED, Outcome.FALLBACK, Outcome.ABANDONED, Outcome.REFUSED)
# Images only: a dish recognition (migration 0014) is no generation of its recipe.
IMAGE_RECORD = or_(USAGE.c.kind.is_(None), USAGE.c.kind == UsageKind.IMAGE.value)


def _exact(value: Any) -> int:
    return int(value or 0)


def _rank(quality: Any) -> Any:
    return case(*((quality == name, rank) for name, rank in QUALITY_RANKS.items()), else_=0)


def _bytewise(value: Any, dialect: str) -> Any:
    """value compared byte by byte: ids are only grouped, never ordered for
    people, and PostgreSQL sorts a text column of a locale several times
    slower (SQLite compares bytes already)."""
    return collate(value, "C") if dialect == "postgresql" else value


def _in_scope(statement: Select[Any], user_id: str | None) -> Select[Any]:
    return statement if user_id is None else statement.where(USAGE.c.user_id == user_id)


@functools.cache
def _settings_statement() -> Executable:
    facts = range_facts("p_")
    c = facts.c
    return (
        select(c.model, c.size, c.quality, func.sum(c.generations), func.sum(c.cost))
        .where(c.outcome == GENERATED)
        .group_by(c.model, c.size, c.quality)
        .order_by(c.model, c.size, c.quality)
    )


def load_system_parts(session: Session, start: datetime, end: datetime) -> SystemParts:
    """Every user's records in [start, end) as GetSystemMetrics reads them:
    the spend and outcomes rollups (whole UTC months, days and hours, shards
    summed) and the ledger's partial hours at the edges, as (spend facts,
    outcome facts): a read of a few rows an hour and day, whatever the
    ledger's size."""
    parts = SystemMetricsQueries(session, dialect_name(session)).load_facts(
        figure_parts(start, end)
    )
    edges = parts["head"] + parts["tail"]
    return parts["spend"] + edges, parts["outcomes"] + edges


def system_hits(parts: SystemParts) -> tuple[int, int]:
    """Every user's cache hits (records whose cache_hit is exact or similar)
    and generations of the parts."""
    rows = parts[1]
    hits = sum(row.exact_hits + row.similar_hits for row in rows)
    return hits, sum(row.generations for row in rows if row.outcome == GENERATED)


def load_system_hits(session: Session, start: datetime, end: datetime) -> tuple[int, int]:
    """system_hits of [start, end)."""
    return system_hits(load_system_parts(session, start, end))


def _last_record_at(session: Session, start: datetime, end: datetime) -> datetime | None:
    """The latest record in [start, end): the end of the created_at index range."""
    u = USAGE.c
    return session.scalar(
        select(u.created_at)
        .where(u.created_at >= start, u.created_at < end)
        .order_by(u.created_at.desc())
        .limit(1)
    )


def load_scope_rollup(
    session: Session,
    user_id: str | None,
    span: tuple[datetime, datetime],
    system: SystemParts | None = None,
) -> tuple[UsageSummary, list[SettingGroup]]:
    """A scope's GetUsageStats figures over span, and its generated images by
    model, size and quality. user_id None: every user's, from the system
    rollups (system: their facts already read for span)."""
    if user_id is None:
        spend, outcomes = system or load_system_parts(session, *span)
        return system_summary(spend, outcomes, _last_record_at(session, *span))
    empty = (span[1], span[1])
    summary = load_usage_summary(session, user_id, span, empty)
    params = {"user_id": user_id, **rollup_split("p_", *span)}
    settings = [
        SettingGroup(row[0], row[1], row[2], _exact(row[3]), _exact(row[4]))
        for row in session.execute(_settings_statement(), params)
    ]
    return summary, settings


def _record_flags(user_id: str | None, start: datetime, end: datetime, dialect: str) -> Any:
    """The scope's records in [start, end) (its index range), each with what
    the window needs (its user and recipe, compared bytewise, its instant and
    outcome, its cost) and two flags of its own, computed once (OFFSET 0):
    a generation whose dish was generated before (with allow_similar off),
    one whose image was never served. Only these narrow rows are sorted
    (whole ledger rows, prompts included, spilled to disk)."""
    u = USAGE.c
    first = DISH_FIRST
    hit = USAGE.alias("hit")
    generation = and_(u.outcome == GENERATED, IMAGE_RECORD)
    # Any user's earlier successful generation of the dish at this quality or
    # better: the earliest one of each quality is kept (migration 0016), so
    # this is a lookup of the dish's few rows, not of its records.
    dish_cached = and_(
        generation,
        u.similar_allowed == false(),
        u.dish_key.is_not(None),
        exists().where(
            first.c.dish_key == u.dish_key,
            first.c.first_at < u.created_at,
            _rank(first.c.quality) >= _rank(u.quality),
        ),
    )
    served = select(hit.c.image_id).where(
        hit.c.cached == true(), hit.c.image_id.is_not(None), hit.c.image_id == u.image_id
    )
    if user_id is not None:
        # One index probe a generation (OFFSET 0 keeps PostgreSQL from
        # hashing every user's hits instead, a cost of the system's size).
        served = served.offset(0)
    unserved = and_(generation, u.image_id.is_not(None), ~served.exists())
    records = select(
        _bytewise(u.user_id, dialect).label("user_key"),
        _bytewise(u.recipe_id, dialect).label("recipe_key"),
        u.id,
        u.created_at,
        u.outcome,
        u.cost_micros.label("cost"),
        generation.label("generation"),
        dish_cached.label("dish_cached"),
        unserved.label("unserved"),
    ).where(u.created_at >= start, u.created_at < end)
    return _in_scope(records, user_id).offset(0).subquery("r")


def _flagged_attempts(user_id: str | None, start: datetime, end: datetime, dialect: str) -> Any:
    """_record_flags' records with two more flags from one window over each
    user's attempts of each recipe (one sort): a generation that repeats its
    recipe in the range, an attempt right after a failed or refused one."""
    r = _record_flags(user_id, start, end, dialect)
    partition, order = (r.c.user_key, r.c.recipe_key), (r.c.created_at, r.c.id)
    nth = func.count().filter(r.c.generation).over(partition_by=partition, order_by=order)
    before = func.lag(r.c.outcome).over(partition_by=partition, order_by=order)
    retried_after = [outcome.value for outcome in RETRIED_AFTER]
    return select(
        r.c.cost,
        r.c.recipe_key,
        r.c.dish_cached,
        r.c.unserved,
        and_(r.c.generation, r.c.recipe_key != "", nth > 1).label("repeat"),
        and_(r.c.recipe_key != "", before.in_(retried_after)).label("retry"),
    ).subquery("f")


def _record_figures_statement(
    user_id: str | None, start: datetime, end: datetime, dialect: str
) -> Any:
    f = _flagged_attempts(user_id, start, end, dialect)
    avoidable = or_(f.c.dish_cached, f.c.repeat)

    def count(condition: Any) -> Any:
        return func.count().filter(condition)

    def cost(condition: Any) -> Any:
        return func.sum(case((condition, f.c.cost), else_=0))

    return select(
        count(f.c.dish_cached),
        cost(f.c.dish_cached),
        func.count(func.distinct(case((f.c.repeat, f.c.recipe_key)))),
        count(f.c.repeat),
        cost(f.c.repeat),
        count(avoidable),
        cost(avoidable),
        count(f.c.unserved),
        cost(f.c.unserved),
        count(f.c.retry),
        cost(f.c.retry),
    )


def _record_figures(
    session: Session, user_id: str | None, start: datetime, end: datetime
) -> tuple[CachingFacts, WasteFacts]:
    """The figures that need single records (dish seen before, repeats,
    images never served again, retries) of a scope's range, in one pass."""
    statement = _record_figures_statement(user_id, start, end, dialect_name(session))
    row = session.execute(statement).one()
    values = [_exact(value) for value in row]
    return CachingFacts(*values[:7]), WasteFacts(*values[7:])


class OptimizationQueries:
    def __init__(self, session: Session) -> None:
        self.session = session

    def load_facts(self, user_id: str | None, start: datetime, end: datetime) -> OptimizationFacts:
        """Every fact of a scope's range (user_id None: every user's)."""
        return load_optimization_facts(self.session, user_id, start, end)


def load_optimization_facts(
    session: Session, user_id: str | None, start: datetime, end: datetime
) -> OptimizationFacts:
    """Every fact of a scope's range (user_id None: every user's)."""
    if dialect_name(session) == "postgresql":
        # The correlated subqueries' estimates put these reads above
        # jit_above_cost, and compiling them took longer than running them;
        # the window functions sort a scope's generations, which spilled to
        # disk at the default work_mem.
        session.execute(text("SET LOCAL jit = off"))
        session.execute(text("SET LOCAL work_mem = '64MB'"))
    system = load_system_parts(session, start, end)
    summary, settings = load_scope_rollup(session, user_id, (start, end), system)
    hits, system_generations = system_hits(system)
    caching, waste = _record_figures(session, user_id, start, end)
    prompts = load_prompt_groups(session, user_id, start, end)
    needs_baseline = any(group.custom for group in prompts) and user_id is not None
    system_prompts = prompts
    if needs_baseline:
        system_prompts = load_prompt_groups(session, None, start, end, built_only=True)
    return OptimizationFacts(
        summary=summary,
        settings=settings,
        prompts=prompts,
        system_prompts=system_prompts,
        caching=caching,
        waste=waste,
        system_cache_hits=hits,
        system_generations=system_generations,
    )
