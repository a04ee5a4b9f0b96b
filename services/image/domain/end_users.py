"""The end-user id a provider sees: a stable, salted hash of the user id.

OpenAI's image API takes an end-user identifier for its abuse monitoring; it
must tell users apart without learning who they are, so the raw id never
leaves the service. The salt is derived from the token secret, so every
replica gives a user the same id.
"""

from __future__ import annotations

import hashlib
import hmac


def end_user_id(salt: bytes, user_id: str) -> str:
    return "u-" + hmac.new(salt, user_id.encode(), hashlib.sha256).hexdigest()[:32]
