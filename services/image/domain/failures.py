"""How a failed generation is described: in the usage record, and to a caller
shown the fallback image instead. Plain Python."""

from __future__ import annotations

from services.common.errors import ContentRefused, DomainError

MAX_ERROR_MESSAGE_CHARS = 500


def short(message: str) -> str:
    return message[:MAX_ERROR_MESSAGE_CHARS]


def failure_message(error: Exception) -> str:
    """The usage record's error_message for a failed attempt."""
    if isinstance(error, DomainError):
        reason = reason_of(error)
        return short(f"{reason}: {error.message}" if reason else error.message)
    return short(f"internal error ({type(error).__name__})")


def fallback_reason_and_message(error: Exception) -> tuple[str, str]:
    """What a caller served the fallback image is told about the failure."""
    if isinstance(error, DomainError):
        return reason_of(error) or "PROVIDER_ERROR", short(error.message)
    return "PROVIDER_ERROR", "the image provider failed; a placeholder is shown instead"


def reason_of(error: Exception) -> str:
    """The error's ErrorInfo reason (an UPPER_SNAKE constant of the code); empty
    for an error without one."""
    reason = getattr(getattr(error, "info", None), "reason", "")
    return reason if isinstance(reason, str) else ""


def blamed_on_input(error: Exception, caller_prompt: bool) -> Exception:
    """A provider's refusal of a request as invalid is the caller's to fix when
    the caller wrote the prompt: INVALID_ARGUMENT with reason INPUT_REJECTED
    (and a streak of them is an abuse signal at BudgetService). Any other
    error is returned as it is."""
    if caller_prompt and reason_of(error) == "PROVIDER_INVALID_REQUEST":
        return ContentRefused(
            "the image provider refused this prompt as invalid; change the prompt and try again",
            reason="INPUT_REJECTED",
        )
    return error
