"""The edge of every RPC: authenticate, check the role, check the request's
bounds (services.common.bounds), call, map errors.

Each servicer method is decorated with @rpc(roles) and receives the caller's
Principal. This is the one place a service's errors become status codes, and it
works the same under a real server and under grpcio-testing.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Generator, Iterator
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
    """A unary handler, or a server-streaming one: a method that returns a
    generator has each error raised while it streams mapped the same way."""

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
            except Exception as error:  # noqa: BLE001 - each kind is mapped in _status_of
                status = _status_of(guard, name, principal, error)
            if status is None and inspect.isgenerator(response):
                return _streamed(guard, name, principal, started, response, context)
            _finish(guard, name, started, status, context)
            return response

        handler.rpc_roles = roles  # type: ignore[attr-defined]  # read by the invariant tests
        return handler

    return decorate


def _streamed(
    guard: Guard,
    name: str,
    principal: Principal | None,
    started: float,
    messages: Generator[Any, Any, Any],
    context: grpc.ServicerContext,
) -> Iterator[Any]:
    """Yield a streaming handler's messages, mapping what it raises."""
    status: grpc.Status | None = None
    try:
        yield from messages
    except Exception as error:  # noqa: BLE001 - each kind is mapped in _status_of
        status = _status_of(guard, name, principal, error)
    finally:
        messages.close()
    _finish(guard, name, started, status, context)


def _finish(
    guard: Guard,
    name: str,
    started: float,
    status: grpc.Status | None,
    context: grpc.ServicerContext,
) -> None:
    """Count the call, and abort it with status when it failed."""
    code = status.code.name if status else "OK"
    guard.metrics.observe_rpc(name, code, time.perf_counter() - started)
    if status is not None:
        context.set_trailing_metadata(status.trailing_metadata)
        context.abort(status.code, status.details)


def _status_of(
    guard: Guard, name: str, principal: Principal | None, error: Exception
) -> grpc.Status:
    """The status a raised error becomes, logged."""
    if isinstance(error, DomainError):
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
        return status
    if isinstance(error, (OperationalError, InterfaceError)):
        # A dropped connection, a killed backend, a locked SQLite file: the
        # transaction rolled back (or, lost during COMMIT, applied once; every
        # write is idempotent by its key), so a retry is safe.
        log.warning("rpc failed: database unavailable", exc_info=error, extra={"method": name})
        return to_status(DATABASE_UNAVAILABLE)
    log.error("rpc failed", exc_info=error, extra={"method": name})
    return internal_status()


def _count_refusal(guard: Guard, method: str, error: DomainError) -> None:
    """Count a refusal that names its reason (ErrorInfo): a fixed set of
    UPPER_SNAKE values from the code, never anything a caller sent."""
    info = getattr(error, "info", None)
    reason = getattr(info, "reason", None)
    if isinstance(reason, str) and reason:
        guard.metrics.observe_refusal(method, reason)
