"""The reconcile command, for cron or ops, reading the service's own settings:

    python -m services.budget.reconcile [--since YYYY-MM-DD]

prints the result as JSON and exits 1 when there is a difference (what is
checked: services.budget.app.reconciliation and store.reconciliation).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from datetime import date

from services.budget.domain.windows import local_midnight
from services.budget.main import reconcile
from services.budget.settings import BudgetSettings
from services.common.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.budget.reconcile",
        description="Check that the budget counters equal the usage ledger.",
    )
    parser.add_argument("--since", type=date.fromisoformat, help="first local date to check")
    args = parser.parse_args(argv)
    try:
        settings = BudgetSettings.from_env(os.environ)
    except ConfigError as exc:
        print(f"reconcile: {exc}", file=sys.stderr)
        return 2
    since = local_midnight(args.since, settings.time_zone) if args.since else None
    result = reconcile(settings, since)
    print(
        json.dumps(
            {
                "consistent": result.consistent,
                "windows_checked": result.windows_checked,
                "reservations_checked": result.reservations_checked,
                "truncated": result.truncated,
                "differences": [asdict(d) for d in result.differences],
            },
            default=str,
            indent=2,
        )
    )
    return 0 if result.consistent else 1


if __name__ == "__main__":
    sys.exit(main())
