"""Credits: one-off amounts an admin adds to one window instance (a user's or
the system's day or month). Plain Python.

A credit belongs to the window instance current when it was granted and
counts from then until it expires, at the latest when that window resets
(a new window starts with no credit). While active it raises the window's
effective limit: spent + reserved <= limit + the active credits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.budget.domain.windows import Period, WindowKey

MAX_REASON_CHARS = 500


@dataclass(frozen=True)
class Credit:
    id: int
    key: WindowKey
    period: Period
    amount_micros: int
    reason: str
    created_at: datetime
    expires_at: datetime
    created_by: str

    def active(self, now: datetime) -> bool:
        return now < self.expires_at


def active_credit(credits: Iterable[Credit], key: WindowKey, now: datetime) -> int:
    """The sum of a window's credits that count at now."""
    return sum(c.amount_micros for c in credits if c.key == key and c.active(now))
