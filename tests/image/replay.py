"""Replay real recipes against a running BudgetService + ImageService pair (offline
provider) and report what the cache saved, and every image it reused across recipes.

    .venv/bin/python -m tests.image.replay                  # ../shared/data/recipes-dev.jsonl
    .venv/bin/python -m tests.image.replay --limit 200 --json report.json

The stream asks for every recipe once, in a shuffled order, and for a share of
them again later (repeats: the same recipe, another user). Different recipes of
one dish are in the file already (several sites' banana cream pie, mac and
cheese, pierogi...). The stream runs twice, each time on fresh databases: with
exact caching only, and with similar-dish reuse allowed. Spend without any cache
is what every request would have cost generated (each answer's cost plus what
it saved, in the exact-only run).

Every similar hit is listed with the title of the recipe asking and the title
of the recipe the image was generated for, so a person can check that none
shows the wrong dish.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recipeimage.image.v1 import image_service_pb2 as pb

from services.budget.domain.limits import TierLimits
from services.common.auth import Authenticator, Role
from services.image.recipes.analyzer import Recipe
from tests.image.conftest import DISH_PAIRS, plain_recipe, proto_recipe
from tests.support.budget_server import tiers
from tests.support.image_server import running_pair

DEFAULT_RECIPES = Path(__file__).resolve().parents[3] / "shared" / "data" / "recipes-dev.jsonl"
SECRET = "replay-secret-that-is-long-enough-for-hs256-0123456789"
# Limits high enough that no request of the replay is refused for money.
UNLIMITED = TierLimits(daily_micros=10**12, monthly_micros=10**12, per_generation_micros=10**9)


@dataclass(frozen=True)
class Request:
    key: str  # which recipe (a line number of the file, or a fixture key)
    recipe: Recipe
    user: str


@dataclass(frozen=True)
class SimilarHit:
    asked_key: str
    asked_title: str
    reused_key: str
    reused_title: str
    similarity: float


@dataclass
class RunResult:
    requests: int = 0
    generated: int = 0
    exact_hits: int = 0
    similar_hits: int = 0
    spend_micros: int = 0
    # cost + saved over every answer: what the stream costs with no cache at all.
    uncached_micros: int = 0
    similar: list[SimilarHit] = field(default_factory=list)
    # The image each recipe was first answered with, by recipe key.
    first_image: dict[str, str] = field(default_factory=dict)


@dataclass
class ReplayReport:
    requests: int
    distinct_recipes: int
    spend_no_cache_micros: int
    spend_exact_only_micros: int
    spend_with_similar_micros: int
    exact_only: RunResult
    with_similar: RunResult

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def load_recipes(path: Path, limit: int | None = None) -> dict[str, Recipe]:
    recipes: dict[str, Recipe] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if limit is not None and len(recipes) >= limit:
            break
        recipes[str(number)] = plain_recipe(json.loads(line), f"recipe-{number}")
    return recipes


def build_stream(
    recipes: dict[str, Recipe], *, repeat_share: float = 0.25, seed: int = 7
) -> list[Request]:
    """Every recipe once, shuffled; then a share of them again, each repeat put
    somewhere after its first request. Deterministic for a seed."""
    rng = random.Random(seed)
    keys = [key for key, recipe in recipes.items() if recipe.title.strip()]
    rng.shuffle(keys)
    stream = [Request(key, recipes[key], f"user-{i % 40}") for i, key in enumerate(keys)]
    repeats = rng.sample(keys, int(len(keys) * repeat_share))
    for n, key in enumerate(repeats):
        first = next(i for i, request in enumerate(stream) if request.key == key)
        at = rng.randint(first + 1, len(stream))
        stream.insert(at, Request(key, recipes[key], f"repeat-user-{n % 40}"))
    return stream


@contextmanager
def scratch_sqlite() -> Iterator[str]:
    """A fresh SQLite database in a temporary directory (both services migrate it)."""
    with tempfile.TemporaryDirectory(prefix="recipeimage-replay-") as scratch:
        yield f"sqlite:///{scratch}/replay.db"


def run_stream(
    stream: Sequence[Request],
    *,
    allow_similar: bool,
    database=scratch_sqlite,  # noqa: ANN001
) -> RunResult:
    """The stream against a fresh pair on a fresh database (`database()` is a
    context manager giving its URL)."""
    authenticator = Authenticator(SECRET)
    token = (("authorization", f"Bearer {authenticator.mint(Role.SERVICE, 'replay')}"),)
    result = RunResult()
    generated_by: dict[str, Request] = {}
    with (
        database() as database_url,
        running_pair(
            database_url,
            authenticator,
            budget_overrides={
                "tiers": tiers(free=UNLIMITED),
                "system_daily_limit_micros": 10**12,
                "system_monthly_limit_micros": 10**12,
            },
        ) as pair,
    ):
        for request in stream:
            reply = pair.image.GenerateImage(
                pb.GenerateImageRequest(
                    user_id=request.user,
                    recipe=proto_recipe(request.recipe),
                    allow_similar=allow_similar,
                ),
                metadata=token,
                timeout=30,
            )
            result.requests += 1
            result.first_image.setdefault(request.key, reply.image.image_id)
            result.spend_micros += reply.cost_micros
            result.uncached_micros += reply.cost_micros + reply.cost_saved_micros
            if reply.source == pb.IMAGE_SOURCE_GENERATED:
                result.generated += 1
                generated_by[reply.image.image_id] = request
            elif reply.source == pb.IMAGE_SOURCE_CACHE_EXACT:
                result.exact_hits += 1
            elif reply.source == pb.IMAGE_SOURCE_CACHE_SIMILAR:
                result.similar_hits += 1
                source = generated_by[reply.image.image_id]
                result.similar.append(
                    SimilarHit(
                        asked_key=request.key,
                        asked_title=request.recipe.title,
                        reused_key=source.key,
                        reused_title=source.recipe.title,
                        similarity=round(reply.similarity, 4),
                    )
                )
    return result


def replay(stream: Sequence[Request], database=scratch_sqlite) -> ReplayReport:  # noqa: ANN001
    exact_only = run_stream(stream, allow_similar=False, database=database)
    with_similar = run_stream(stream, allow_similar=True, database=database)
    return ReplayReport(
        requests=len(stream),
        distinct_recipes=len({request.key for request in stream}),
        spend_no_cache_micros=exact_only.uncached_micros,
        spend_exact_only_micros=exact_only.spend_micros,
        spend_with_similar_micros=with_similar.spend_micros,
        exact_only=exact_only,
        with_similar=with_similar,
    )


def pair_recall(run: RunResult, same: Iterable[tuple[str, str]]) -> tuple[int, int]:
    """(pairs answered with one image, pairs asked): of the labelled same-dish
    pairs whose two recipes were both in the stream."""
    asked = [(a, b) for a, b in same if a in run.first_image and b in run.first_image]
    joined = sum(1 for a, b in asked if run.first_image[a] == run.first_image[b])
    return joined, len(asked)


def _usd(micros: int) -> str:
    return f"{micros / 1_000_000:,.4f} USD"


def render(report: ReplayReport, same: Sequence[tuple[str, str]] = ()) -> Iterable[str]:
    yield f"requests: {report.requests} ({report.distinct_recipes} distinct recipes)"
    yield f"spend, no cache:        {_usd(report.spend_no_cache_micros)}"
    yield f"spend, exact cache:     {_usd(report.spend_exact_only_micros)}"
    yield f"spend, exact + similar: {_usd(report.spend_with_similar_micros)}"
    for name, run in (("exact only", report.exact_only), ("exact + similar", report.with_similar)):
        yield (
            f"{name}: {run.generated} generated, {run.exact_hits} exact hits, "
            f"{run.similar_hits} similar hits"
        )
    joined, asked = pair_recall(report.with_similar, same)
    if asked:
        yield (
            f"same-dish recall: {joined} of {asked} labelled same-dish pairs in the stream "
            f"answered with one image ({joined / asked:.0%})"
        )
    yield f"similar hits ({len(report.with_similar.similar)}), asked <- reused:"
    for hit in report.with_similar.similar:
        yield (
            f"  {hit.similarity:.3f}  {hit.asked_title!r} <- {hit.reused_title!r}"
            f"  (#{hit.asked_key} <- #{hit.reused_key})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.image.replay", description=__doc__)
    parser.add_argument("--recipes", type=Path, default=DEFAULT_RECIPES)
    parser.add_argument("--limit", type=int, default=None, help="only the first N recipes")
    parser.add_argument("--repeat-share", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--pairs",
        type=Path,
        default=DISH_PAIRS,
        help="labelled pairs (keys are line numbers of --recipes) for the same-dish recall",
    )
    args = parser.parse_args(argv)
    if not args.recipes.exists():
        print(f"replay: {args.recipes} does not exist", file=sys.stderr)
        return 2
    stream = build_stream(
        load_recipes(args.recipes, args.limit), repeat_share=args.repeat_share, seed=args.seed
    )
    report = replay(stream)
    same: list[tuple[str, str]] = []
    if args.pairs.exists():
        same = [(p["a"], p["b"]) for p in json.loads(args.pairs.read_text("utf-8"))["same"]]
    for line in render(report, same):
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
