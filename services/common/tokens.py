"""recipeimage-token: mint a bearer token for a role and user id.

recipeimage-token admin ops-alice
recipeimage-token user 42 --ttl 600
"""

from __future__ import annotations

import argparse
import os
import sys

from services.common.auth import Role
from services.common.config import ConfigError
from services.common.settings import CommonSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recipeimage-token", description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=[r.value for r in Role])
    parser.add_argument("subject", help="the user id (sub claim)")
    parser.add_argument("--ttl", type=int, default=24 * 3600, help="seconds until expiry")
    args = parser.parse_args(argv)
    try:
        authenticator = CommonSettings.from_env(os.environ).authenticator()
    except (ConfigError, ValueError) as exc:
        print(f"recipeimage-token: {exc}", file=sys.stderr)
        return 2
    print(authenticator.mint(Role(args.role), args.subject, ttl_seconds=args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
