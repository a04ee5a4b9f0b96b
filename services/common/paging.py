"""AIP-158 paging: page sizes and opaque page tokens. Plain Python.

A token is the position of the last item served (keyset paging: a page costs
the same however deep it is) and a fingerprint of the request's other fields;
a token used with different fields is refused rather than silently paging
through something else. Tokens are opaque to clients: URL-safe base64 of a
small JSON document that may change between versions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping

from services.common.errors import Violations

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
_VERSION = 1


def page_size(
    violations: Violations,
    requested: int,
    field: str = "page_size",
    *,
    default: int = DEFAULT_PAGE_SIZE,
    maximum: int = MAX_PAGE_SIZE,
) -> int:
    """0 means the default; above the maximum means the maximum (AIP-158)."""
    if requested < 0:
        violations.add(field, "must not be negative")
        return default
    if requested == 0:
        return default
    return min(requested, maximum)


def _fingerprint(query: Mapping[str, object]) -> str:
    canonical = json.dumps(query, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode(position: Mapping[str, object], query: Mapping[str, object]) -> str:
    document = {"v": _VERSION, "p": dict(position), "q": _fingerprint(query)}
    raw = json.dumps(document, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(
    violations: Violations,
    token: str,
    query: Mapping[str, object],
    field: str = "page_token",
) -> dict[str, object] | None:
    """The position a token carries; None for the first page (or a bad token,
    which is added to violations)."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        document = json.loads(raw)
        valid = (
            isinstance(document, dict)
            and document.get("v") == _VERSION
            and isinstance(document.get("p"), dict)
        )
    except (binascii.Error, ValueError, UnicodeDecodeError):
        valid = False
    if not valid:
        violations.add(field, "not a page token this service issued")
        return None
    if document.get("q") != _fingerprint(query):
        violations.add(field, "was issued for a request with other fields; send the same ones")
        return None
    return document["p"]
