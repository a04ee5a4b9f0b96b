"""Where the use cases count what on-call watches, as plain callables: main.py
wires them to Prometheus; left out, they count nothing. Each is a counter
increment or a histogram observation, never I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _ignore(_: object) -> None:
    return None


@dataclass(frozen=True)
class GenerationMeters:
    # kind: "exact" or "similar"
    cache_hit: Callable[[str], None] = _ignore
    cache_miss: Callable[[float], None] = _ignore
    cache_lookup_seconds: Callable[[float], None] = _ignore
    # outcome: "served" (the other generation's image), "claimed" (the lease
    # came free: generate), "timed_out" (waited out the bound: generate anyway)
    single_flight_wait: Callable[[str], None] = _ignore
    single_flight_wait_seconds: Callable[[float], None] = _ignore


@dataclass(frozen=True)
class ProviderMeters:
    seconds: Callable[[float], None] = _ignore
    # reason: the failure's ErrorInfo reason (PROVIDER_TIMEOUT, ...), else UNEXPECTED
    error: Callable[[str], None] = _ignore
