"""recipeimage-migrate (`make migrate`): bring a service's database to the
latest schema. Reads the same settings as the services.

    recipeimage-migrate all        # both services
    recipeimage-migrate budget
"""

from __future__ import annotations

import argparse
import os
import sys

from services.common.db import create_db_engine
from services.common.migrations import upgrade


def _database_urls() -> dict[str, str]:
    from services.budget.settings import BudgetSettings
    from services.image.settings import ImageSettings

    return {
        "budget": BudgetSettings.from_env(os.environ).database_url,
        "image": ImageSettings.from_env(os.environ).database_url,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="recipeimage-migrate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("service", choices=["all", "budget", "image"])
    args = parser.parse_args(argv)
    urls = _database_urls()
    for service in ("budget", "image") if args.service == "all" else (args.service,):
        engine = create_db_engine(urls[service])
        try:
            upgrade(service, engine)
        finally:
            engine.dispose()
        print(f"{service}: migrated to head")
    return 0


if __name__ == "__main__":
    sys.exit(main())
