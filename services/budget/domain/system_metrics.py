"""System metrics: how a range splits into what the rollups hold (whole UTC
days and hours) and what only the ledger holds (the partial hours at its
edges), the trend's points, an error's reason, and the figures folded from
the rollups' rows. Plain Python.

The rollups (migration 0009) hold every user's records by UTC hour, day and
month; a range [start, end) in any zone is read as whole UTC months, days
and hours (a period mostly inside the range whole, less what lies outside),
and the minutes before the first and after the last whole hour (ledger
edges: nonempty only for a range bound that is not on the hour, e.g.
midnight in Asia/Kolkata, +05:30).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.budget.domain.usage import Outcome
from services.budget.domain.windows import Period, local_midnight

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# A trend of a range up to this long is hourly, of a longer one daily.
HOURLY_TREND_UP_TO = timedelta(hours=48)
# The shards of the system rollups (the migration's SHARDS).
SYSTEM_SHARDS = 16
_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}:")

Range = tuple[datetime, datetime]


def error_reason(message: str) -> str:
    """The reason a usage record's error_message starts with ("<REASON>: ...",
    as ImageService writes it); "" when it names none. The rollup triggers
    compute the same in SQL."""
    found = _REASON.match(message)
    return found.group()[:-1] if found else ""


def floor_hour(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(instant: datetime) -> datetime:
    floor = floor_hour(instant)
    return floor if floor == instant else floor + HOUR


def ledger_edges(start: datetime, end: datetime) -> tuple[Range, Range]:
    """The partial hours at the ends of [start, end), read from the ledger:
    (start, first whole hour) and (end of the last whole hour, end); the
    whole range when it holds no whole hour. Empty parts are (x, x)."""
    first_hour, last_hour = ceil_hour(start), floor_hour(end)
    if first_hour > last_hour:  # within one UTC hour
        return (start, end), (end, end)
    return (start, first_hour), (last_hour, end)


# The rollups' periods, longest first: a range is read as whole ones of each.
PERIOD_KINDS = ("month", "day", "hour")


def _period_start(instant: datetime, kind: str) -> datetime:
    hour = floor_hour(instant)
    if kind == "hour":
        return hour
    return hour.replace(hour=0) if kind == "day" else hour.replace(day=1, hour=0)


def _next_period(start: datetime, kind: str) -> datetime:
    if kind == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start + (DAY if kind == "day" else HOUR)


@dataclass(frozen=True)
class FigureParts:
    """[start, end) as the figures read it: whole UTC months, days and hours
    of the rollups, each added (+1) or subtracted (-1), and the ledger's
    edges. A month or a day more than half inside the range is read whole,
    less what lies outside it (read one level down): today in Berlin is a
    day and an hour less an hour, not 24 hours; 90 days are about three
    months, a few days and hours."""

    periods: dict[tuple[str, datetime], int]
    head_edge: Range
    tail_edge: Range

    def starts(self, kind: str, sign: int) -> list[datetime]:
        """The first instants of the periods of kind read with sign."""
        return sorted(start for (k, start), s in self.periods.items() if k == kind and s == sign)


def _periods(
    first: datetime, last: datetime, level: int, sign: int
) -> dict[tuple[str, datetime], int]:
    """[first, last) (whole hours) as signed periods of PERIOD_KINDS[level:]."""
    kind, found = PERIOD_KINDS[level], {}
    period = _period_start(first, kind)
    while period < last:
        following = _next_period(period, kind)
        inside = (max(period, first), min(following, last))
        if inside == (period, following) or (
            kind != "hour" and inside[1] - inside[0] > (following - period) / 2
        ):
            found[(kind, period)] = sign
            for outside in ((period, inside[0]), (inside[1], following)):
                if outside[0] < outside[1]:
                    found.update(_periods(*outside, level + 1, -sign))
        else:
            found.update(_periods(*inside, level + 1, sign))
        period = following
    return found


def figure_parts(start: datetime, end: datetime, *, longest: str = "month") -> FigureParts:
    """How the figures read [start, end): periods of `longest` and shorter."""
    head_edge, tail_edge = ledger_edges(start, end)
    first, last = head_edge[1], tail_edge[0]  # whole hours [first, last)
    periods = _periods(first, last, PERIOD_KINDS.index(longest), 1) if first < last else {}
    return FigureParts(periods, head_edge, tail_edge)


class Granularity(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"


def trend_points(start: datetime, end: datetime, zone: ZoneInfo) -> tuple[Granularity, list[Range]]:
    """The trend's points: UTC hours for a range up to HOURLY_TREND_UP_TO, else
    the zone's calendar days, each clipped to the range. A day boundary
    that is not on a UTC hour (a zone like +05:30) is taken at the UTC hour
    before it, so every point but the first and the last is whole rollup
    hours or days; the range's own bounds are exact."""
    if end - start <= HOURLY_TREND_UP_TO:
        granularity, inner = Granularity.HOUR, _hours_between(start, end)
    else:
        granularity, inner = Granularity.DAY, _midnights_between(start, end, zone)
    bounds = [start, *inner, end]
    return granularity, list(zip(bounds, bounds[1:], strict=False))


def _hours_between(start: datetime, end: datetime) -> list[datetime]:
    hours, hour = [], ceil_hour(start)
    if hour == start:
        hour += HOUR
    while hour < end:
        hours.append(hour)
        hour += HOUR
    return hours


def _midnights_between(start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    bounds: list[datetime] = []
    day = start.astimezone(zone).date() + DAY
    while (midnight := local_midnight(day, zone)) < end:
        if (bound := floor_hour(midnight)) > start:
            bounds.append(bound)
        day += DAY
    return bounds


@dataclass(frozen=True)
class TrendPlan:
    """Which rollup rows make up each trend point: whole UTC days (their
    first instants) and whole UTC hours added or subtracted (as
    figure_parts reads a range). The range's ledger edges belong to its
    first and last point (every inner bound is on the hour)."""

    points: list[Range]
    days: list[list[datetime]]
    hours: list[list[tuple[datetime, int]]]

    @property
    def day_starts(self) -> list[datetime]:
        """Every UTC day any point reads (its first instant)."""
        return sorted({day for days in self.days for day in days})

    @property
    def hour_starts(self) -> list[datetime]:
        """Every UTC hour any point reads."""
        return sorted({hour for hours in self.hours for hour, _ in hours})

    @classmethod
    def of(cls, points: list[Range], parts: FigureParts) -> TrendPlan:
        whole = (parts.head_edge[1], parts.tail_edge[0])
        days, hours = [], []
        for start, end in points:
            first, last = max(start, whole[0]), min(end, whole[1])
            inner = figure_parts(first, max(first, last), longest="day")
            days.append(inner.starts("day", 1))
            hours.append([(hour, sign) for sign in (1, -1) for hour in inner.starts("hour", sign)])
        return cls(points, days, hours)

    def fold(
        self,
        day_totals: dict[datetime, tuple[int, int]],
        hour_totals: dict[datetime, tuple[int, int]],
        edges: tuple[tuple[int, int], tuple[int, int]],
    ) -> list[TrendPoint]:
        """The points' (generations, cost) from the rollups' totals and the
        ledger edges' (generations, cost)."""
        points = []
        for n, (start, end) in enumerate(self.points):
            parts = [day_totals.get(d, (0, 0)) for d in self.days[n]]
            for hour, sign in self.hours[n]:
                generations, cost = hour_totals.get(hour, (0, 0))
                parts.append((sign * generations, sign * cost))
            if n == 0:
                parts.append(edges[0])
            if n == len(self.points) - 1:
                parts.append(edges[1])
            generations = sum(g for g, _ in parts)
            points.append(TrendPoint(start, end, sum(c for _, c in parts), generations))
        return points


@dataclass(frozen=True)
class FactRow:
    """Records of one model, size, quality, outcome and reason (a rollup's
    row has "" for the kinds it does not key by, and 0 for its measures)."""

    model: str
    size: str
    quality: str
    outcome: str
    reason: str
    generations: int
    cost_micros: int
    successful: int
    exact_hits: int
    similar_hits: int
    cost_saved_micros: int
    # The spend rollup's and the edges' only (0 in the outcomes rollup's rows).
    cached: int = 0
    generated: int = 0
    generated_cost_micros: int = 0


@dataclass(frozen=True)
class CacheFigures:
    exact_hits: int
    similar_hits: int
    cost_saved_micros: int
    generations: int

    def rate(self, hits: int) -> float:
        return hits / self.generations if self.generations else 0.0


@dataclass(frozen=True)
class OutcomeFigure:
    outcome: str
    count: int
    cost_micros: int


@dataclass(frozen=True)
class FailureFigure:
    outcome: str
    reason: str
    count: int


@dataclass(frozen=True)
class SpendFigure:
    model: str
    size: str
    quality: str
    generations: int
    cost_micros: int
    cost_saved_micros: int


@dataclass(frozen=True)
class TrendPoint:
    start: datetime
    end: datetime
    cost_micros: int = 0
    generations: int = 0


@dataclass(frozen=True)
class SystemMetrics:
    span: Period
    time_zone: str
    generations: int
    total_cost_micros: int
    average_cost_per_generation_micros: int
    successful_generations: int
    cache: CacheFigures
    outcomes: list[OutcomeFigure]
    failures: list[FailureFigure]
    spend: list[SpendFigure]
    granularity: Granularity
    trend: list[TrendPoint]

    @classmethod
    def of(
        cls,
        span: Period,
        zone_key: str,
        *,
        outcome_facts: list[FactRow],
        spend_facts: list[FactRow],
        granularity: Granularity,
        trend: list[TrendPoint],
    ) -> SystemMetrics:
        """The figures of a range whose records are outcome_facts (by outcome
        and reason) and, again, spend_facts (by model, size and quality);
        facts of hours subtracted are negative, and kinds they cancel out
        are left out."""
        facts = outcome_facts
        generations = sum(f.generations for f in facts)
        cost = sum(f.cost_micros for f in facts)
        return cls(
            span=span,
            time_zone=zone_key,
            generations=generations,
            total_cost_micros=cost,
            average_cost_per_generation_micros=cost // generations if generations else 0,
            successful_generations=sum(f.successful for f in facts),
            cache=CacheFigures(
                sum(f.exact_hits for f in facts),
                sum(f.similar_hits for f in facts),
                sum(f.cost_saved_micros for f in facts),
                generations,
            ),
            outcomes=_outcomes(facts),
            failures=_failures(facts),
            spend=_spend(spend_facts),
            granularity=granularity,
            trend=trend,
        )


def _add(totals: dict[tuple[str, ...], list[int]], key: tuple[str, ...], *values: int) -> None:
    sums = totals.setdefault(key, [0] * len(values))
    for i, value in enumerate(values):
        sums[i] += value


def _outcome_order(name: str) -> int:
    names = [o.value for o in Outcome]
    return names.index(name) if name in names else len(names)


def _outcomes(facts: list[FactRow]) -> list[OutcomeFigure]:
    totals: dict[tuple[str, ...], list[int]] = {}
    for f in facts:
        _add(totals, (f.outcome,), f.generations, f.cost_micros)
    figures = [OutcomeFigure(key[0], *values) for key, values in totals.items() if values[0]]
    return sorted(figures, key=lambda figure: _outcome_order(figure.outcome))


def _failures(facts: list[FactRow]) -> list[FailureFigure]:
    totals: dict[tuple[str, ...], list[int]] = {}
    for f in facts:
        if not Outcome(f.outcome).served_image:
            _add(totals, (f.outcome, f.reason), f.generations)
    figures = [
        FailureFigure(key[0], key[1], values[0]) for key, values in totals.items() if values[0]
    ]
    return sorted(figures, key=lambda f: (-f.count, _outcome_order(f.outcome), f.reason))


def _spend(facts: list[FactRow]) -> list[SpendFigure]:
    totals: dict[tuple[str, ...], list[int]] = {}
    for f in facts:
        _add(
            totals, (f.model, f.size, f.quality), f.generations, f.cost_micros, f.cost_saved_micros
        )
    figures = [
        SpendFigure(key[0], key[1], key[2], values[0], values[1], values[2])
        for key, values in totals.items()
        if values[0]
    ]
    return sorted(
        figures, key=lambda s: (-s.cost_micros, -s.generations, s.model, s.size, s.quality)
    )


class TopUsersSpan(enum.StrEnum):
    DAY = "day"
    MONTH = "month"


class TopUsersOrder(enum.StrEnum):
    COST = "cost"
    GENERATIONS = "generations"


def top_users_period(span: TopUsersSpan, instant: datetime) -> Period:
    """The UTC day or month holding instant."""
    utc = ZoneInfo("UTC")
    day = instant.astimezone(UTC).date()
    if span is TopUsersSpan.DAY:
        return Period(day, local_midnight(day, utc), local_midnight(day + DAY, utc))
    first = day.replace(day=1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return Period(first, local_midnight(first, utc), local_midnight(following, utc))


@dataclass(frozen=True)
class TopUsersCursor:
    """Where a page of top users ended: the last user's value (cost or
    attempts), id and rank, and the period the ranking began in."""

    value: int
    user_id: str
    rank: int
    period_start: datetime


@dataclass(frozen=True)
class TopUser:
    rank: int
    user_id: str
    cost_micros: int
    generations: int


@dataclass(frozen=True)
class TopUsersPage:
    period: Period
    users: list[TopUser]
    next_page_token: str
