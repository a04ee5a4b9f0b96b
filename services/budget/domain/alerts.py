"""Budget alerts: values and names. Plain Python.

An alert is raised at most once per rule, subject and window (period_key);
the store's unique key makes a second raise a no-op, however many replicas
and requests try at once.

subject is a user id, or SYSTEM_SUBJECT ("") for the whole system. window is
"daily", "monthly" or "" (a rule not tied to a budget window), period_key
the window's start date (ISO) or the day the evaluator judged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

SYSTEM_SUBJECT = ""


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertWindow(enum.StrEnum):
    DAILY = "daily"
    MONTHLY = "monthly"
    NONE = ""


@dataclass(frozen=True)
class Alert:
    """One alert. id is 0 until stored; silenced: raised while a silence of
    its rule and subject was in force (recorded, never streamed or sent)."""

    rule: str
    subject: str
    window: AlertWindow
    period_key: str
    severity: Severity
    message: str
    raised_at: datetime
    details: dict[str, str] = field(default_factory=dict)
    silenced: bool = False
    id: int = 0


@dataclass(frozen=True)
class AlertFilter:
    """ListAlerts' filters; empty strings and None filter nothing."""

    subject: str | None = None
    rule: str = ""
    severity: str = ""
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class StreamCursor:
    """Where a stream stands: the last row sent, as (xact_id, id)."""

    xact_id: int = 0
    id: int = 0
