"""How a failed generation is described: in the usage record, and to a caller
shown the fallback image instead. Plain Python."""

from __future__ import annotations

from services.common.errors import DomainError

MAX_ERROR_MESSAGE_CHARS = 500


def short(message: str) -> str:
    return message[:MAX_ERROR_MESSAGE_CHARS]


def failure_message(error: Exception) -> str:
    """The usage record's error_message for a failed attempt."""
    if isinstance(error, DomainError):
        reason = _reason(error)
        return short(f"{reason}: {error.message}" if reason else error.message)
    return short(f"internal error ({type(error).__name__})")


def fallback_reason_and_message(error: Exception) -> tuple[str, str]:
    """What a caller served the fallback image is told about the failure."""
    if isinstance(error, DomainError):
        return _reason(error) or "PROVIDER_ERROR", short(error.message)
    return "PROVIDER_ERROR", "the image provider failed; a placeholder is shown instead"


def _reason(error: DomainError) -> str:
    reason = getattr(getattr(error, "info", None), "reason", "")
    return reason if isinstance(reason, str) else ""
