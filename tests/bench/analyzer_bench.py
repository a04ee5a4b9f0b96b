"""The recipe analyzer over the 828 recipes of ../shared/data/recipes-dev.jsonl:
microseconds and CPU per recipe, first with its caches empty (every ingredient
line and title read for the first time) and then warm (the same recipes again,
as a popular recipe comes back).

    make bench BENCH=analyzer_bench

One thread, no I/O: the figures are the analyzer's own. Each is printed beside
the baseline as the share of an empty RPC's p50 latency a recipe takes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from types import ModuleType

from services.image.recipes import analyzer, canonical, dish, ingredients, text, vocabulary
from services.image.recipes.analyzer import Recipe, analyze
from tests.bench.harness import Measurement
from tests.image.replay import DEFAULT_RECIPES, load_recipes

PASSES = 7
_MODULES: tuple[ModuleType, ...] = (analyzer, canonical, dish, ingredients, text, vocabulary)


def clear_caches() -> None:
    """Empty every functools cache of recipe understanding."""
    for module in _MODULES:
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()


def one_pass(recipes: Sequence[Recipe]) -> tuple[float, float, list[float]]:
    """(wall seconds, CPU seconds, each recipe's wall seconds) of analyzing them all."""
    latencies: list[float] = []
    wall, cpu = time.perf_counter(), time.process_time()
    for recipe in recipes:
        began = time.perf_counter()
        analyze(recipe)
        latencies.append(time.perf_counter() - began)
    return time.perf_counter() - wall, time.process_time() - cpu, latencies


def run(baseline: Measurement) -> None:
    if not DEFAULT_RECIPES.exists():
        print(f"(analyzer_bench: {DEFAULT_RECIPES} is missing; skipped)")
        return
    recipes = list(load_recipes(DEFAULT_RECIPES).values())
    analyze(recipes[0])  # imports and compiled patterns are not the figure
    for caches in ("empty", "warm"):
        passes = []
        for _ in range(PASSES):
            if caches == "empty":
                clear_caches()
            passes.append(one_pass(recipes))
        # The median pass: the machine is shared, one pass may be slowed.
        wall, cpu, latencies = sorted(passes)[PASSES // 2]
        print(_line(caches, len(recipes), wall, cpu, latencies, baseline), flush=True)


def _line(
    caches: str, count: int, wall: float, cpu: float, latencies: list[float], baseline: Measurement
) -> str:
    per_recipe = wall / count
    p99 = sorted(latencies)[int(0.99 * len(latencies))]
    return (
        f"{'analyze(), caches ' + caches + f' ({count} recipes)':<48} "
        f"{per_recipe * 1e6:>7.0f} us/recipe  CPU {cpu / count * 1e6:>5.0f} us  "
        f"p50 {statistics.median(latencies) * 1e6:>5.0f} us  p99 {p99 * 1e6:>6.0f} us  "
        f"= {per_recipe * 1000 / baseline.p50_ms:.3f} x baseline p50 latency"
    )
