"""Settings both services share: logging, tokens, shutdown.

Every variable is listed with its default in the README's configuration table
(a test checks that the table names each one).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.auth import Authenticator
from services.common.config import ConfigError, env_float, env_int, env_path, env_str
from services.common.paging import PageTokens


@dataclass(frozen=True)
class CommonSettings:
    log_level: str
    jwt_secret: str
    jwt_secret_file: Path
    jwt_audience: str
    grace_seconds: float
    # Server processes per service on one port (SO_REUSEPORT); 1: one process.
    server_processes: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CommonSettings:
        return cls(
            log_level=env_str(env, "RECIPEIMAGE_LOG_LEVEL", "INFO"),
            jwt_secret=env_str(env, "RECIPEIMAGE_JWT_SECRET", ""),
            jwt_secret_file=env_path(env, "RECIPEIMAGE_JWT_SECRET_FILE", "var/jwt-secret"),
            jwt_audience=env_str(env, "RECIPEIMAGE_JWT_AUDIENCE", ""),
            grace_seconds=env_float(env, "RECIPEIMAGE_SHUTDOWN_GRACE_SECONDS", 30.0),
            server_processes=env_int(
                env, "RECIPEIMAGE_SERVER_PROCESSES", usable_cores(), minimum=1
            ),
        )

    def secret(self) -> str:
        if self.jwt_secret:
            return self.jwt_secret
        if self.jwt_secret_file.exists():
            return self.jwt_secret_file.read_text().strip()
        raise ConfigError(
            "no token secret: set RECIPEIMAGE_JWT_SECRET, or RECIPEIMAGE_JWT_SECRET_FILE to a file "
            f"holding it ({self.jwt_secret_file} does not exist; `make run` creates it)"
        )

    def authenticator(self) -> Authenticator:
        return Authenticator(self.secret(), audience=self.jwt_audience or None)


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Access:
    """The edge's share of the token secret, as both services take it: who may
    call, how page tokens are signed, and how long in-flight calls may finish
    on shutdown."""

    authenticator: Authenticator
    page_tokens: PageTokens
    grace_seconds: float
    # Salts the end-user ids a provider sees (never a raw user id).
    end_user_salt: bytes

    @classmethod
    def from_settings(cls, common: CommonSettings) -> Access:
        """All from the one token secret, so every replica agrees with every other."""
        secret = common.secret()
        return cls(
            common.authenticator(),
            PageTokens.from_secret(secret),
            common.grace_seconds,
            hmac.new(secret.encode(), b"recipeimage end users", "sha256").digest(),
        )
