"""GetSystemMetrics' and ListTopUsers' statements: a range's facts from the
spend and outcomes rollups (whole UTC days and hours, shards summed) and the ledger's
created_at index (the partial hours at its edges), the trend from the
totals rollup, and a period's top users from an index range of the per-user
totals. Never a scan of the ledger."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Executable,
    Select,
    String,
    Table,
    bindparam,
    cast,
    func,
    literal,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from services.budget.domain.system_metrics import (
    PERIOD_KINDS,
    FactRow,
    FigureParts,
    TopUser,
    TopUsersCursor,
    TopUsersOrder,
    TopUsersSpan,
)
from services.budget.store.system_rollups import (
    OUTCOMES,
    SPEND,
    TOTALS,
    USAGE,
    USERS,
    ledger_keys,
)

_KINDS = ("model", "size", "quality", "outcome", "reason")
# The parts of a range's facts: each rollup's rows, then the ledger's edges.
PART_SPEND, PART_OUTCOMES, PART_HEAD_EDGE, PART_TAIL_EDGE = "spend", "outcomes", "head", "tail"
_MEASURES = {
    "generations": "generations",
    "cost": "cost_micros",
    "successful": "successful",
    "exact_hits": "exact_hits",
    "similar_hits": "similar_hits",
    "saved": "cost_saved_micros",
    # The spend rollup's own (migration 0015), for cost optimization.
    "cached": "cached",
    "generated": "generated",
    "generated_cost": "generated_cost_micros",
}


def _rolled(rollup: Table, part: str, kind: str, sign: int) -> Select[Any]:
    """A system rollup's rows of the periods of one kind starting at any of
    :<kind>_<plus|minus>, shards summed (negated for sign -1); the kinds and
    measures it has not are typed "" and 0, so the parts line up."""
    c = rollup.c

    def kind_of(name: str) -> Any:
        return (c[name] if name in c else cast(literal(""), String())).label(name)

    def measure(label: str, name: str) -> Any:
        total = func.sum(c[name]) if name in c else literal(0)
        return (total if sign > 0 else -total).label(label)

    starts: BindParameter[Any] = bindparam(_starts_param(kind, sign), expanding=True)
    return (
        select(
            literal(part).label("part"),
            *(kind_of(name) for name in _KINDS),
            *(measure(label, name) for label, name in _MEASURES.items()),
        )
        .where(c.kind == kind, c.start.in_(starts))
        .group_by(*(c[name] for name in _KINDS if name in c))
    )


def _starts_param(kind: str, sign: int) -> str:
    return f"{kind}_{'plus' if sign > 0 else 'minus'}"


def _edge(dialect: str, part: str, start: str, end: str) -> Select[Any]:
    """The ledger's records in [start, end) (less than an hour), keyed as
    the rollups key them."""
    u, reason = USAGE.c, ledger_keys(dialect).reason
    return (
        select(
            literal(part).label("part"),
            u.model,
            u.size,
            u.quality,
            u.outcome,
            reason.label("reason"),
            func.count().label("generations"),
            func.sum(u.cost_micros).label("cost"),
            func.count().filter(u.success.is_(True)).label("successful"),
            func.count().filter(u.cache_hit == "exact").label("exact_hits"),
            func.count().filter(u.cache_hit == "similar").label("similar_hits"),
            func.sum(u.cost_saved_micros).label("saved"),
            func.count().filter(u.cached.is_(True)).label("cached"),
            func.count().filter(u.outcome == "generated").label("generated"),
            func.sum(u.cost_micros).filter(u.outcome == "generated").label("generated_cost"),
        )
        .where(u.created_at >= bindparam(start), u.created_at < bindparam(end))
        .group_by(u.model, u.size, u.quality, u.outcome, reason)
    )


@functools.cache
def _facts(dialect: str) -> Executable:
    rolled = [
        _rolled(rollup, part, kind, sign)
        for rollup, part in ((SPEND, PART_SPEND), (OUTCOMES, PART_OUTCOMES))
        for kind in PERIOD_KINDS
        for sign in (1, -1)
    ]
    return union_all(
        *rolled,
        _edge(dialect, PART_HEAD_EDGE, "e0", "e1"),
        _edge(dialect, PART_TAIL_EDGE, "f0", "f1"),
    )


def _fact(row: Any) -> FactRow:
    return FactRow(
        model=row.model,
        size=row.size,
        quality=row.quality,
        outcome=row.outcome,
        reason=row.reason,
        generations=int(row.generations or 0),
        cost_micros=int(row.cost or 0),
        successful=int(row.successful or 0),
        exact_hits=int(row.exact_hits or 0),
        similar_hits=int(row.similar_hits or 0),
        cost_saved_micros=int(row.saved or 0),
        cached=int(row.cached or 0),
        generated=int(row.generated or 0),
        generated_cost_micros=int(row.generated_cost or 0),
    )


def _totals_of(kind: str) -> Select[Any]:
    t = TOTALS.c
    return (
        select(
            t.kind,
            t.start,
            func.sum(t.generations).label("generations"),
            func.sum(t.cost_micros).label("cost"),
        )
        .where(t.kind == kind, t.start.in_(bindparam(f"{kind}_starts", expanding=True)))
        .group_by(t.kind, t.start)
    )


@functools.cache
def _trend_totals() -> Executable:
    """The totals rollup's days starting at any of :day_starts and hours at
    any of :hour_starts, shards summed."""
    return union_all(_totals_of("day"), _totals_of("hour"))


class SystemMetricsQueries:
    def __init__(self, session: Session, dialect: str) -> None:
        self.session = session
        self.dialect = dialect

    def read_one_snapshot(self) -> None:
        """Every later statement of the transaction sees one snapshot (on
        PostgreSQL REPEATABLE READ; SQLite's transactions are serial), so the
        trend adds up to the totals. Call before the first statement."""
        if self.dialect == "postgresql":
            self.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})

    def load_facts(self, split: FigureParts) -> dict[str, list[FactRow]]:
        """The range's facts by part: the spend and the outcomes rollups'
        rows, and the ledger's head and tail edges."""
        params: dict[str, object] = {
            _starts_param(kind, sign): split.starts(kind, sign)
            for kind in PERIOD_KINDS
            for sign in (1, -1)
        }
        params |= {
            "e0": split.head_edge[0],
            "e1": split.head_edge[1],
            "f0": split.tail_edge[0],
            "f1": split.tail_edge[1],
        }
        parts: dict[str, list[FactRow]] = {
            part: [] for part in (PART_SPEND, PART_OUTCOMES, PART_HEAD_EDGE, PART_TAIL_EDGE)
        }
        for row in self.session.execute(_facts(self.dialect), params):
            parts[row.part].append(_fact(row))
        return parts

    def load_trend_totals(
        self, days: Sequence[datetime], hours: Sequence[datetime]
    ) -> tuple[dict[datetime, tuple[int, int]], dict[datetime, tuple[int, int]]]:
        """(generations, cost) of the totals rollup of the UTC days and the
        UTC hours starting at the instants given."""
        found: dict[str, dict[datetime, tuple[int, int]]] = {"day": {}, "hour": {}}
        params = {"day_starts": list(days), "hour_starts": list(hours)}
        for row in self.session.execute(_trend_totals(), params):
            found[row.kind][row.start] = (int(row.generations), int(row.cost))
        return found["day"], found["hour"]

    def load_top_users(
        self,
        span: TopUsersSpan,
        start: date,
        order: TopUsersOrder,
        after: TopUsersCursor | None,
        limit: int,
    ) -> list[TopUser]:
        """A period's users, highest first by order (ties: user_id
        descending, so the index is read backwards), after the user a
        previous page ended on."""
        u = USERS.c
        measure = u.cost_micros if order is TopUsersOrder.COST else u.generations
        statement = select(u.user_id, u.cost_micros, u.generations).where(
            u.kind == span.value, u.start == start
        )
        if after is not None:
            statement = statement.where(
                tuple_(measure, u.user_id) < tuple_(literal(after.value), literal(after.user_id))
            )
        rows = self.session.execute(
            statement.order_by(measure.desc(), u.user_id.desc()).limit(limit)
        ).all()
        first = after.rank + 1 if after else 1
        return [
            TopUser(first + n, row.user_id, int(row.cost_micros), int(row.generations))
            for n, row in enumerate(rows)
        ]
