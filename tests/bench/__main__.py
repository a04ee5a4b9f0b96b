"""make bench: every benchmark module, each reported against one baseline."""

from __future__ import annotations

import importlib
import sys

from tests.bench.harness import empty_rpc_baseline, report

# Each module has run(baseline) -> None and prints its own lines via report().
# A module with OWN_BASELINE measures its own (service_bench: each server's
# empty RPC in its own process), so the in-process one is made only if needed.
MODULES = (
    "tests.bench.budget_bench",
    "tests.bench.cache_bench",
    "tests.bench.optimization_bench",
    "tests.bench.tools_bench",
    "tests.bench.system_metrics_bench",
    "tests.bench.analyzer_bench",
    "tests.bench.service_bench",
    "tests.bench.rollup_insert_bench",
)


def main(argv: list[str]) -> int:
    wanted = set(argv) or {name.rsplit(".", 1)[1] for name in MODULES}
    baseline = None
    for name in MODULES:
        if name.rsplit(".", 1)[1] not in wanted:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"({name} not written yet)")
            continue
        if baseline is None and not getattr(module, "OWN_BASELINE", False):
            baseline = empty_rpc_baseline()
            print(report(baseline, baseline), flush=True)
        module.run(baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
