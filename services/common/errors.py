"""Domain errors: what went wrong, in terms a caller can act on.

Plain Python, no gRPC: the rules raise these and services.common.rpc turns
each into a status code with google.rpc details at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta


class DomainError(Exception):
    """Base of every error a caller is meant to see."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class InvalidArgument(DomainError):
    """The request is malformed; each bad field is named."""

    def __init__(self, violations: list[FieldViolation] | FieldViolation) -> None:
        if isinstance(violations, FieldViolation):
            violations = [violations]
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))

    @classmethod
    def field(cls, name: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(name, description)])


class Violations:
    """Collects every bad field of a request, to refuse it once with all of them."""

    def __init__(self) -> None:
        self._found: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._found.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self._found:
            raise InvalidArgument(list(self._found))


class Unauthenticated(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


class NotFound(DomainError):
    pass


@dataclass
class Reasoned:
    """An UPPER_SNAKE reason a client can branch on, with string metadata."""

    reason: str
    metadata: dict[str, str] = field(default_factory=dict)


class FailedPrecondition(DomainError):
    def __init__(self, message: str, reason: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.info = Reasoned(reason, metadata or {})


class QuotaExceeded(DomainError):
    """A limit refuses the request until retry_after has passed.

    `subject` names what the limit applies to (e.g. "user:42" or "system"),
    as QuotaFailure wants it.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        subject: str,
        retry_after: timedelta,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.info = Reasoned(reason, metadata or {})
        self.subject = subject
        self.retry_after = retry_after


class ContentRefused(DomainError):
    """The provider refused the prompt (content policy); not worth retrying."""

    def __init__(self, message: str, reason: str = "CONTENT_POLICY_VIOLATION") -> None:
        super().__init__(message)
        self.info = Reasoned(reason)


class Unavailable(DomainError):
    """A dependency cannot be reached; nothing was done, a retry may succeed."""

    def __init__(self, message: str, reason: str = "DEPENDENCY_UNAVAILABLE") -> None:
        super().__init__(message)
        self.info = Reasoned(reason)


class DeadlineExceeded(DomainError):
    def __init__(self, message: str, reason: str = "PROVIDER_TIMEOUT") -> None:
        super().__init__(message)
        self.info = Reasoned(reason)


class RateLimited(QuotaExceeded):
    """A rate rule refuses the request until exactly retry_after has passed:
    its RetryInfo keeps the sub-second delay (a QuotaExceeded's is rounded up
    to whole seconds)."""


class DeniedWithReason(PermissionDenied):
    """PERMISSION_DENIED with an ErrorInfo reason and metadata, and a RetryInfo
    when waiting lifts it (retry_after; None: waiting does not)."""

    def __init__(
        self,
        message: str,
        reason: str,
        metadata: dict[str, str] | None = None,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(message)
        self.info = Reasoned(reason, metadata or {})
        self.retry_after = retry_after
