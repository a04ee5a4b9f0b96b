"""Rate states (GCRA's one theoretical arrival time a key) and the counts of
generations in flight: the statements admission control runs, built once.

A call takes its rules in one conditional multi-row upsert, the user's key
before the system's (the lock order): each row's TAT moves only where the
rule admits the call, and RETURNING names those rows. The rows are locked
either way until the transaction ends, so counting held reservations after
the upsert sees every concurrent reservation of the same user (or of the
system) that got there first: the caps hold across replicas.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Executable,
    String,
    TextClause,
    bindparam,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from services.budget.domain.reservations import ReservationState
from services.budget.store.models import RateStateRow, ReservationRow, table

RATES = table(RateStateRow)
RESERVATIONS = table(ReservationRow)
HELD = ReservationState.HELD.value
IN_FLIGHT_KEY = "#in_flight"


@dataclass(frozen=True)
class Take:
    """One rule's key, what an admitted call adds to its TAT, and how far
    ahead of now its TAT may be for the call to be admitted."""

    key: str
    interval_micros: int
    tolerance_micros: int


@functools.cache
def _take(count: int) -> TextClause:
    """Move each key's TAT to max(TAT, now) + interval where max(TAT, now) -
    now <= its tolerance; a new key starts at now + interval. The inserted
    value carries the interval (excluded.tat - now)."""
    rows = ", ".join(f"(:k{n}, :now + :i{n})" for n in range(count))
    tolerance = " ".join(f"WHEN :k{n} THEN :t{n}" for n in range(count))
    base = "CASE WHEN budget_rate_states.tat > :now THEN budget_rate_states.tat ELSE :now END"
    sql = f"""
INSERT INTO budget_rate_states (key, tat)
VALUES {rows}
ON CONFLICT (key) DO UPDATE
SET tat = {base} + (excluded.tat - :now)
WHERE {base} - :now <= CASE excluded.key {tolerance} END
RETURNING key, tat
"""
    types: dict[str, TypeEngine[Any]] = {"now": BigInteger()}
    for n in range(count):
        types |= {f"k{n}": String(), f"i{n}": BigInteger(), f"t{n}": BigInteger()}
    return text(sql).bindparams(*(bindparam(name, type_=kind) for name, kind in types.items()))


@functools.cache
def _in_flight() -> Executable:
    """Held reservations of the user (parameter user_id) and of the system."""
    held = RESERVATIONS.c.state == HELD
    user = RESERVATIONS.c.user_id == bindparam("user_id")
    return select(
        select(func.count()).where(user, held).scalar_subquery().label("user_in_flight"),
        select(func.count()).where(held).scalar_subquery().label("system_in_flight"),
    )


@functools.cache
def _snapshot() -> Executable:
    """The TATs of some keys and the user's generations in flight, in one query."""
    tats = select(RATES.c.key, RATES.c.tat).where(
        RATES.c.key.in_(bindparam("keys", expanding=True))
    )
    held = select(literal(IN_FLIGHT_KEY), func.count()).where(
        RESERVATIONS.c.user_id == bindparam("user_id"), RESERVATIONS.c.state == HELD
    )
    return tats.union_all(held)


class RateStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def take(self, takes: Sequence[Take], now_micros: int) -> dict[str, int]:
        """Take one call from each key's allowance where it admits one, in one
        statement, keys locked in the order given. Returns the admitted keys
        with their new TAT; a key missing refused the call (its TAT unmoved)."""
        if not takes:
            return {}
        params: dict[str, object] = {"now": now_micros}
        for n, one in enumerate(takes):
            params |= {
                f"k{n}": one.key,
                f"i{n}": one.interval_micros,
                f"t{n}": one.tolerance_micros,
            }
        rows = self.session.execute(_take(len(takes)), params)
        return {row.key: int(row.tat) for row in rows}

    def load_tats(self, keys: Iterable[str]) -> dict[str, int]:
        """The stored TATs of the keys that have one."""
        keys = list(keys)
        if not keys:
            return {}
        rows = self.session.execute(select(RATES.c.key, RATES.c.tat).where(RATES.c.key.in_(keys)))
        return {row.key: int(row.tat) for row in rows}

    def count_in_flight(self, user_id: str) -> tuple[int, int]:
        """The user's and the system's held reservations (run after take(), so
        concurrent reservations that locked the same keys first are counted)."""
        row = self.session.execute(_in_flight(), {"user_id": user_id}).one()
        return int(row.user_in_flight), int(row.system_in_flight)

    def load_snapshot(self, user_id: str, keys: Iterable[str]) -> tuple[dict[str, int], int]:
        """The TATs of the keys that have one, and the user's held
        reservations, in one round trip."""
        rows = self.session.execute(_snapshot(), {"keys": list(keys), "user_id": user_id}).all()
        tats = {str(row[0]): int(row[1]) for row in rows if row[0] != IN_FLIGHT_KEY}
        in_flight = next(int(row[1]) for row in rows if row[0] == IN_FLIGHT_KEY)
        return tats, in_flight
