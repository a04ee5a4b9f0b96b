"""The edge of every RPC: authenticate, check the role, check the request's
bounds (services.common.bounds), call, map errors.

Each servicer method is decorated with @rpc(roles) and receives the caller's
Principal. This is the one place a service's errors become status codes, and it
works the same under a real server and under grpcio-testing.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy.exc import InterfaceError, OperationalError

from services.common.auth import Authenticator, Principal, Role, require_role
from services.common.bounds import check_request
from services.common.errors import DomainError, Unavailable
from services.common.status import internal_status, to_status
from services.common.telemetry import Metrics

log = logging.getLogger("recipeimage.rpc")
DATABASE_UNAVAILABLE = Unavailable(
    "the database could not be reached; nothing was changed, retry", reason="DATABASE_UNAVAILABLE"
)

Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Any, Request, grpc.ServicerContext, Principal], Response]


@dataclass(frozen=True)
class Guard:
    """What the edge needs: who may call, and where to count calls."""

    authenticator: Authenticator
    metrics: Metrics


def rpc(roles: frozenset[Role]) -> Callable[[Handler[Any, Any]], Callable[..., Any]]:
    def decorate(method: Handler[Any, Any]) -> Callable[..., Any]:
        name = method.__name__

        @functools.wraps(method)
        def handler(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            guard: Guard = self.guard
            started = time.perf_counter()
            status: grpc.Status | None = None
            principal: Principal | None = None
            response = None
            try:
                principal = guard.authenticator.authenticate(context.invocation_metadata())
                require_role(principal, roles)
                if isinstance(request, Message):
                    check_request(request)
                response = method(self, request, context, principal)
            except DomainError as error:
                status = to_status(error)
                _count_refusal(guard, name, error)
                log.info(
                    "rpc refused",
                    extra={
                        "method": name,
                        "code": status.code.name,
                        "error": error.message,
                        "principal": principal.subject if principal else None,
                    },
                )
            except (OperationalError, InterfaceError):
                # A dropped connection, a killed backend, a locked SQLite file: the
                # transaction rolled back (or, lost during COMMIT, applied once; every
                # write is idempotent by its key), so a retry is safe.
                status = to_status(DATABASE_UNAVAILABLE)
                log.warning(
                    "rpc failed: database unavailable", exc_info=True, extra={"method": name}
                )
            except Exception:
                status = internal_status()
                log.exception("rpc failed", extra={"method": name})
            code = status.code.name if status else "OK"
            guard.metrics.observe_rpc(name, code, time.perf_counter() - started)
            if status is not None:
                context.set_trailing_metadata(status.trailing_metadata)
                context.abort(status.code, status.details)
            return response

        handler.rpc_roles = roles  # type: ignore[attr-defined]  # read by the invariant tests
        return handler

    return decorate


def _count_refusal(guard: Guard, method: str, error: DomainError) -> None:
    """Count a refusal that names its reason (ErrorInfo): a fixed set of
    UPPER_SNAKE values from the code, never anything a caller sent."""
    info = getattr(error, "info", None)
    reason = getattr(info, "reason", None)
    if isinstance(reason, str) and reason:
        guard.metrics.observe_refusal(method, reason)
