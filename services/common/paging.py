"""AIP-158 paging: page sizes and opaque, tamper-evident page tokens. Plain Python.

A token is the position of the last item served (keyset paging: a page costs
the same however deep it is) and a fingerprint of the request's other fields;
a token used with different fields is refused rather than silently paging
through something else. Tokens are opaque to clients: URL-safe base64 of a
small JSON document and an HMAC over it with a key every replica shares, so a
token the service did not issue is refused before its contents are read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping

from services.common.errors import Violations

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_TOKEN_CHARS = 1024
_VERSION = 2
_MAC_BYTES = 16


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


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    """Issues and checks page tokens. Built once per service from its secret."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a page token key needs at least 16 bytes")
        self._key = key

    @classmethod
    def from_secret(cls, secret: str) -> PageTokens:
        """A key derived from the service's token secret, so every replica agrees."""
        return cls(hmac.new(secret.encode(), b"recipeimage page tokens", "sha256").digest())

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, "sha256").digest()[:_MAC_BYTES]

    def encode(self, position: Mapping[str, object], query: Mapping[str, object]) -> str:
        document = {"v": _VERSION, "p": dict(position), "q": _fingerprint(query)}
        body = json.dumps(document, separators=(",", ":"), default=str).encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def decode(
        self,
        violations: Violations,
        token: str,
        query: Mapping[str, object],
        field: str = "page_token",
    ) -> dict[str, object] | None:
        """The position a token carries; None for the first page (or a bad token,
        which is added to violations)."""
        if not token:
            return None
        document = self._verified(token)
        if document is None:
            violations.add(field, "not a page token this service issued")
            return None
        if document.get("q") != _fingerprint(query):
            violations.add(field, "was issued for a request with other fields; send the same ones")
            return None
        position = document["p"]
        assert isinstance(position, dict)
        return position

    def _verified(self, token: str) -> dict[str, object] | None:
        if len(token) > MAX_TOKEN_CHARS:
            return None
        body_text, _, mac_text = token.partition(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        if (
            isinstance(document, dict)
            and document.get("v") == _VERSION
            and isinstance(document.get("p"), dict)
        ):
            return document
        return None
