"""AIP-158 page sizes and opaque page tokens for the most-used cache entries.

A token is the (uses, entry id) of the last entry of a page, versioned and
base64url-encoded: callers pass it back unchanged and never parse it.
"""

from __future__ import annotations

import base64
import binascii
import json

from services.common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
_VERSION = 1


def page_size(requested: int) -> int:
    """0 means the default; more than the maximum is the maximum."""
    if requested < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def encode_token(uses: int, entry_id: int) -> str:
    raw = json.dumps({"v": _VERSION, "u": uses, "i": entry_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str) -> tuple[int, int] | None:
    """The position after which the page starts; None for the first page."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        raw = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(raw, dict) or raw.get("v") != _VERSION:
            raise ValueError("wrong version")
        uses, entry_id = raw["u"], raw["i"]
        for value in (uses, entry_id):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError("bad position")
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise InvalidArgument.field(
            "page_token", "malformed: pass the next_page_token of a previous page unchanged"
        ) from None
    return uses, entry_id
