"""Transitional alias of services.budget.store.models for callers outside
this branch's reach (tests/image). Remove once they import
services.budget.store.models."""

from services.budget.store.models import ReservationRow, UsageRow

__all__ = ["ReservationRow", "UsageRow"]
