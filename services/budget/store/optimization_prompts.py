"""Cost optimization's prompt groups (generated images by model and by who
wrote the prompt) from the prompt rollups of migration 0013: a user's UTC
days from budget_user_prompts and its partial days from its index range of
the ledger; every user's whole UTC days and hours from budget_system_prompts
(shards summed) and the partial hours at the edges from the ledger's
created_at index. A read proportional to the range's days, never to its
records."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, Select, bindparam, case, func, select, union_all
from sqlalchemy.orm import Session

from services.budget.domain.optimization import PromptGroup
from services.budget.domain.system_metrics import figure_parts
from services.budget.domain.usage import Outcome
from services.budget.store.models import SystemPromptsRow, UsageRow, UserPromptsRow, table
from services.budget.store.usage_summary import rollup_split

USAGE = table(UsageRow)
SYSTEM = table(SystemPromptsRow)
USERS = table(UserPromptsRow)
MEASURES = ("generations", "input_tokens", "cost_micros")
KINDS = ("day", "hour")


def _ledger(start: str, end: str, *, everyone: bool) -> Select[Any]:
    """The ledger's generated records of [start, end) whose prompt it knows."""
    u = USAGE.c
    statement = (
        select(
            u.model,
            case((u.custom_prompt.is_(True), 1), else_=0).label("custom"),
            func.count().label("generations"),
            func.sum(u.input_tokens).label("input_tokens"),
            func.sum(u.cost_micros).label("cost_micros"),
        )
        .where(
            u.created_at >= bindparam(start),
            u.created_at < bindparam(end),
            u.outcome == Outcome.GENERATED.value,
            u.custom_prompt.is_not(None),
        )
        .group_by(u.model, u.custom_prompt)
    )
    return statement if everyone else statement.where(u.user_id == bindparam("user_id"))


def _user_days() -> Select[Any]:
    """A user's rows of budget_user_prompts in [d0, d1) by model and custom."""
    c = USERS.c
    return (
        select(c.model, c.custom, *(func.sum(c[name]).label(name) for name in MEASURES))
        .where(
            c.user_id == bindparam("user_id"),
            c.kind == "day",
            c.start >= bindparam("d0"),
            c.start < bindparam("d1"),
        )
        .group_by(c.model, c.custom)
    )


@functools.cache
def _user_statement() -> Executable:
    return union_all(
        _user_days(),
        _ledger("h0", "h1", everyone=False),
        _ledger("t0", "t1", everyone=False),
    )


def _rolled_at(kind: str, sign: int) -> Select[Any]:
    """The system rollup's rows of one kind starting at the instants of
    parameter <kind>_<plus|minus>, shards summed, negated for sign -1."""
    c = SYSTEM.c

    def measure(name: str) -> Any:
        total = func.sum(c[name])
        return (total if sign > 0 else -total).label(name)

    starts: Any = bindparam(_starts_param(kind, sign), expanding=True)
    return (
        select(c.model, c.custom, *(measure(name) for name in MEASURES))
        .where(c.kind == kind, c.start.in_(starts))
        .group_by(c.model, c.custom)
    )


def _starts_param(kind: str, sign: int) -> str:
    return f"{kind}_{'plus' if sign > 0 else 'minus'}"


@functools.cache
def _system_statement() -> Executable:
    return union_all(
        *(_rolled_at(kind, sign) for kind in KINDS for sign in (1, -1)),
        _ledger("e0", "e1", everyone=True),
        _ledger("f0", "f1", everyone=True),
    )


def _system_params(start: datetime, end: datetime) -> dict[str, object]:
    # The prompt rollup has days and hours (no months): a range is read in those.
    parts = figure_parts(start, end, longest="day")
    params: dict[str, object] = {
        _starts_param(kind, sign): parts.starts(kind, sign) for kind in KINDS for sign in (1, -1)
    }
    (e0, e1), (f0, f1) = parts.head_edge, parts.tail_edge
    return params | {"e0": e0, "e1": e1, "f0": f0, "f1": f1}


def load_prompt_groups(
    session: Session,
    user_id: str | None,
    start: datetime,
    end: datetime,
    *,
    built_only: bool = False,
) -> list[PromptGroup]:
    """Generated images in [start, end) by model and by who wrote the
    prompt, of one user or (user_id None) of every user; records from before
    the ledger knew who wrote it are left out."""
    if user_id is None:
        rows = session.execute(_system_statement(), _system_params(start, end))
    else:
        split = rollup_split("", start, end)
        rows = session.execute(_user_statement(), {"user_id": user_id, **split})
    sums: dict[tuple[str, int], list[int]] = {}
    for row in rows:
        totals = sums.setdefault((row.model, int(row.custom)), [0, 0, 0])
        for n, value in enumerate((row.generations, row.input_tokens, row.cost_micros)):
            totals[n] += int(value or 0)
    return [
        PromptGroup(model, bool(custom), images, tokens, cost)
        for (model, custom), (images, tokens, cost) in sorted(sums.items())
        if images and not (built_only and custom)
    ]
