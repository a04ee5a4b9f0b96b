"""Collect every bad field of a request, then refuse it once (google.rpc.BadRequest)."""

from __future__ import annotations

from services.budget.domain import Usage
from services.budget.models import ID_LENGTH
from services.common.auth import Principal
from services.common.errors import InvalidArgument
from services.common.errors import Violations as BaseViolations

MAX_PROMPT_CHARS = 32_000
MAX_ERROR_MESSAGE_CHARS = 4_000
_USAGE_TEXT_LIMITS = {
    "recipe_id": ID_LENGTH,
    "size": 32,
    "model": 100,
    "provider": 64,
    "prompt": MAX_PROMPT_CHARS,
}
_USAGE_NOT_NEGATIVE = (
    "prompt_length",
    "cost_micros",
    "cost_saved_micros",
    "generation_time_ms",
    "input_tokens",
    "output_tokens",
)


class Violations(BaseViolations):
    def acting_for(self, principal: Principal, requested: str, field: str = "user_id") -> str:
        """principal.acting_for, collecting a missing user id with the other fields.

        PermissionDenied (a user naming someone else) is raised at once.
        """
        if len(requested) > ID_LENGTH:
            self.add(field, f"at most {ID_LENGTH} characters")
            return ""
        try:
            user_id = principal.acting_for(requested, field)
        except InvalidArgument as error:
            self._found.extend(error.violations)
            return ""
        if len(user_id) > ID_LENGTH:  # a token's subject, too long to store
            self.add(field, f"at most {ID_LENGTH} characters")
        return user_id

    def identifier(self, field: str, value: str) -> None:
        if not value.strip():
            self.add(field, "required")
        elif len(value) > ID_LENGTH:
            self.add(field, f"at most {ID_LENGTH} characters")

    def positive(self, field: str, value: int) -> None:
        if value <= 0:
            self.add(field, "must be positive")

    def not_negative(self, field: str, value: int) -> None:
        if value < 0:
            self.add(field, "must not be negative")

    def usage(self, usage: Usage, prefix: str = "usage.") -> None:
        """The fields of a usage record a caller supplies (not ids or cost)."""
        for name in _USAGE_NOT_NEGATIVE:
            self.not_negative(prefix + name, getattr(usage, name))
        for name, limit in _USAGE_TEXT_LIMITS.items():
            if len(getattr(usage, name)) > limit:
                self.add(prefix + name, f"at most {limit} characters")
        if usage.cache_hit not in ("", "exact", "similar"):
            self.add(prefix + "cache_hit", 'must be "exact", "similar" or empty')
