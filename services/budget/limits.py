"""Transitional alias of services.budget.domain.limits for callers outside
this branch's reach (tests/image, tests/bench/cache_bench.py). Remove once
they import services.budget.domain.limits."""

from services.budget.domain.limits import Tier, TierLimits

__all__ = ["Tier", "TierLimits"]
