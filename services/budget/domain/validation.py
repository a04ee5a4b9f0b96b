"""Rules on the plain values of a request: every bad field is collected, then
the request is refused once (google.rpc.BadRequest at the edge)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.budget.domain.limits import LimitValues
from services.budget.domain.usage import ID_LENGTH, MAX_PROMPT_CHARS, StatsPeriod, Usage
from services.budget.domain.windows import Period, day_of, month_of, week_of
from services.common.errors import Violations as BaseViolations

MAX_RANGE = timedelta(days=366)
MAX_ZONE_CHARS = 64
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_USAGE_TEXT_LIMITS = {
    "recipe_id": ID_LENGTH,
    "size": 32,
    "model": 100,
    "provider": 64,
    "prompt": MAX_PROMPT_CHARS,
}
_USAGE_NOT_NEGATIVE = (
    "prompt_length",
    "cost_micros",
    "cost_saved_micros",
    "generation_time_ms",
    "input_tokens",
    "output_tokens",
)
_PERIODS = {StatsPeriod.DAY: day_of, StatsPeriod.WEEK: week_of, StatsPeriod.MONTH: month_of}


class Violations(BaseViolations):
    def identifier(self, field: str, value: str) -> None:
        if not value.strip():
            self.add(field, "required")
        elif len(value) > ID_LENGTH:
            self.add(field, f"at most {ID_LENGTH} characters")

    def positive(self, field: str, value: int) -> None:
        if value <= 0:
            self.add(field, "must be positive")

    def not_negative(self, field: str, value: int | None) -> None:
        if value is not None and value < 0:
            self.add(field, "must not be negative")

    def limits(self, field: str, values: LimitValues) -> None:
        """Limits someone stores: each one set must not be negative."""
        for name, value in (
            ("daily_micros", values.daily_micros),
            ("monthly_micros", values.monthly_micros),
            ("per_generation_micros", values.per_generation_micros),
        ):
            self.not_negative(f"{field}.{name}", value)

    def usage(self, usage: Usage, prefix: str = "usage.") -> None:
        """The fields of a usage record a caller supplies (not ids or cost)."""
        for name in _USAGE_NOT_NEGATIVE:
            self.not_negative(prefix + name, getattr(usage, name))
        for name, limit in _USAGE_TEXT_LIMITS.items():
            if len(getattr(usage, name)) > limit:
                self.add(prefix + name, f"at most {limit} characters")
        if usage.cache_hit not in ("", "exact", "similar"):
            self.add(prefix + "cache_hit", 'must be "exact", "similar" or empty')
        for name in ("dish_key", "image_id"):
            if getattr(usage, name) and not _SHA256_HEX.fullmatch(getattr(usage, name)):
                self.add(prefix + name, "64 lowercase hexadecimal characters or empty")

    def time_zone(self, name: str, default: ZoneInfo) -> ZoneInfo:
        """The IANA zone named (default when the name is empty)."""
        if not name.strip():
            return default
        if len(name) > MAX_ZONE_CHARS:
            self.add("time_zone", f"at most {MAX_ZONE_CHARS} characters")
            return default
        try:
            return ZoneInfo(name.strip())
        except (ZoneInfoNotFoundError, ValueError, OSError):
            self.add("time_zone", "not an IANA time zone (e.g. UTC, Europe/Berlin)")
            return default

    def stats_span(
        self,
        period: StatsPeriod | None,
        start: datetime | None,
        end: datetime | None,
        now: datetime,
        zone: ZoneInfo,
    ) -> Period | None:
        """The span a GetUsageStats request asks for: the current day, week or
        month, or [start, end) of at most MAX_RANGE."""
        if period is None:
            self.add("period", "required: DAY, WEEK, MONTH or RANGE")
            return None
        if period is not StatsPeriod.RANGE:
            for name, value in (("start_time", start), ("end_time", end)):
                if value is not None:
                    self.add(name, "only with period RANGE")
            return _PERIODS[period](now, zone)
        for name, value in (("start_time", start), ("end_time", end)):
            if value is None:
                self.add(name, "required with period RANGE")
        if start is None or end is None:
            return None
        if end <= start:
            self.add("end_time", "must be after start_time")
        elif end - start > MAX_RANGE:
            self.add("end_time", "a range is at most 366 days")
        return Period(start.astimezone(zone).date(), start, end)
