"""The service bench's figures: each operation's phases and CPU, its ratios to
the empty RPC on the same server in the same run, and issue 12's targets
printed beside them (pass or miss, never asserted)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.bench.load_clients import PhaseResult


@dataclass
class Cpu:
    """CPU seconds per operation of each process group (None: not readable)."""

    budget: float | None
    image: float | None
    postgres: float | None

    @property
    def servers(self) -> float | None:
        if self.budget is None or self.image is None:
            return None
        return self.budget + self.image

    @property
    def total(self) -> float | None:
        servers = self.servers
        if servers is None:
            return None
        return servers + (self.postgres or 0.0)


@dataclass
class Figures:
    name: str
    server: str  # "budget" or "image": whose empty RPC it is compared with
    callers_16: PhaseResult | None = None
    callers_1: PhaseResult | None = None
    open_loop: PhaseResult | None = None
    offered: float = 0.0
    cpu: Cpu | None = None
    note: str = ""
    targets: list[Target] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """A target of the issue, as text and as a test of this run's figures
    (None when a figure it needs was not measured)."""

    text: str
    met: Callable[[Figures, Figures, dict[str, Figures]], bool | None]


def rate_ratio(figures: Figures, empty: Figures) -> float | None:
    if figures.callers_16 is None or empty.callers_16 is None or not empty.callers_16.rate:
        return None
    return figures.callers_16.rate / empty.callers_16.rate


def cpu_ratio(figures: Figures, empty: Figures) -> float | None:
    """Servers plus PostgreSQL per operation over the empty RPC's server CPU per call."""
    if figures.cpu is None or empty.cpu is None:
        return None
    total = figures.cpu.total
    base = empty.cpu.budget if empty.server == "budget" else empty.cpu.image
    if total is None or not base:
        return None
    return total / base


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.2f} ms"


def _x(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}x"


def _phase(result: PhaseResult) -> str:
    errors = f", {result.errors} errors ({result.first_error[:80]})" if result.errors else ""
    if not result.calls:
        return f"no calls completed{errors}"
    return (
        f"{result.rate:>8.0f}/s  p50 {result.p50_ms:>8.2f} ms  p99 {result.p99_ms:>8.2f} ms{errors}"
    )


def describe(figures: Figures, empty: Figures, all_figures: dict[str, Figures]) -> list[str]:
    lines = [f"{figures.name}{figures.note}"]
    if figures.callers_16 is not None:
        ratio = rate_ratio(figures, empty)
        lines.append(f"  closed, 16 callers:  {_phase(figures.callers_16)}  rate {_x(ratio)} empty")
    if figures.callers_1 is not None:
        lines.append(f"  closed, 1 caller:    {_phase(figures.callers_1)}")
    if figures.open_loop is not None:
        lines.append(f"  open, {figures.offered:,.0f}/s offered: {_phase(figures.open_loop)}")
    if figures.cpu is not None:
        cpu = figures.cpu
        lines.append(
            f"  CPU per call: BudgetService {_ms(cpu.budget)}, ImageService {_ms(cpu.image)}, "
            f"PostgreSQL {_ms(cpu.postgres)}; all {_ms(cpu.total)} = "
            f"{_x(cpu_ratio(figures, empty), 1)} the empty RPC's server CPU"
        )
    for target in figures.targets:
        met = target.met(figures, empty, all_figures)
        verdict = "n/a" if met is None else ("pass" if met else "MISS")
        lines.append(f"  target {target.text}: {verdict}")
    return lines


def table(title: str, rows: list[tuple[Figures, Figures]]) -> list[str]:
    """A Markdown table of the run (for the README)."""
    out = [
        f"{title}",
        "",
        "| operation | rate, 16 callers | ratio | p50 / p99, 1 caller | p99, 16 callers "
        "| open loop: offered, p99 | CPU per op: budget + image (+ PostgreSQL) | CPU ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for figures, empty in rows:
        c16, c1, opened, cpu = figures.callers_16, figures.callers_1, figures.open_loop, figures.cpu
        out.append(
            "| "
            + " | ".join(
                (
                    figures.name,
                    f"{c16.rate:,.0f}/s" if c16 else "",
                    _x(rate_ratio(figures, empty)) if c16 else "",
                    f"{_f(c1.p50_ms)} / {_f(c1.p99_ms)} ms" if c1 else "",
                    f"{_f(c16.p99_ms)} ms" if c16 else "",
                    f"{figures.offered:,.0f}/s: {_f(opened.p99_ms)} ms" if opened else "",
                    _cpu_cell(cpu) if cpu else "",
                    _x(cpu_ratio(figures, empty), 1) if cpu else "",
                )
            )
            + " |"
        )
    return out


def _f(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f}"


def _cpu_cell(cpu: Cpu) -> str:
    """budget + image (+ PostgreSQL, when there is one) in ms."""
    parts = [cpu.budget, cpu.image] + ([cpu.postgres] if cpu.postgres is not None else [])
    return " + ".join(_f1(part) for part in parts) + " ms"


def _f1(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.2f}"


# -- issue 12's targets


def _ratio_at_least(minimum: float) -> Target:
    def met(figures: Figures, empty: Figures, _all: dict[str, Figures]) -> bool | None:
        ratio = rate_ratio(figures, empty)
        return None if ratio is None else ratio >= minimum

    return Target(f">= {minimum}x the empty RPC's rate at 16 callers", met)


def _cpu_ratio_at_most(maximum: float) -> Target:
    def met(figures: Figures, empty: Figures, _all: dict[str, Figures]) -> bool | None:
        ratio = cpu_ratio(figures, empty)
        return None if ratio is None else ratio <= maximum

    return Target(f"server + database CPU <= {maximum}x the empty RPC's server CPU", met)


def _server_cpu_at_most(milliseconds: float) -> Target:
    def met(figures: Figures, _empty: Figures, _all: dict[str, Figures]) -> bool | None:
        servers = figures.cpu.servers if figures.cpu else None
        return None if servers is None else servers * 1000 <= milliseconds

    return Target(f"server CPU over both services <= {milliseconds} ms", met)


def _open_p99_at_most(milliseconds: float) -> Target:
    def met(figures: Figures, _empty: Figures, _all: dict[str, Figures]) -> bool | None:
        opened = figures.open_loop
        if opened is None or not opened.calls:
            return None
        return opened.errors == 0 and opened.p99_ms <= milliseconds

    return Target(f"p99 <= {milliseconds} ms at the offered rate", met)


def _one_caller_p99_at_most(milliseconds: float) -> Target:
    def met(figures: Figures, _empty: Figures, _all: dict[str, Figures]) -> bool | None:
        one = figures.callers_1
        return None if one is None or not one.calls else one.p99_ms <= milliseconds

    return Target(f"p99 <= {milliseconds} ms at 1 caller", met)


def _sixteen_p99_at_most(milliseconds: float) -> Target:
    def met(figures: Figures, _empty: Figures, _all: dict[str, Figures]) -> bool | None:
        many = figures.callers_16
        return None if many is None or not many.calls else many.p99_ms <= milliseconds

    return Target(f"p99 <= {milliseconds} ms at 16 callers", met)


def _within_of_exact(factor: float) -> Target:
    def met(figures: Figures, _empty: Figures, every: dict[str, Figures]) -> bool | None:
        exact = every.get("exact")
        if exact is None or exact.callers_16 is None or figures.callers_16 is None:
            return None
        return figures.callers_16.rate * factor >= exact.callers_16.rate

    return Target(f"rate within {factor}x of exact hits at 16 callers", met)


def targets(backend: str, kind: str) -> list[Target]:
    """Issue 12's targets for an operation on a backend."""
    if backend == "sqlite":
        return [_sixteen_p99_at_most(50)] if kind not in ("empty", "stats") else []
    return {
        "pair": [_ratio_at_least(0.25), _cpu_ratio_at_most(4), _open_p99_at_most(10)],
        "exact": [_ratio_at_least(0.25), _server_cpu_at_most(2), _open_p99_at_most(15)],
        "similar": [_within_of_exact(1.5)],
        "limits": [_ratio_at_least(0.5)],
        "check": [_ratio_at_least(0.5)],
        "stats": [_one_caller_p99_at_most(10)],
    }.get(kind, [])
