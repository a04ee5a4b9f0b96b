"""Blocks: while one is in force, a user's GenerateImage calls are refused.
Plain Python.

A block is in force from its creation until it expires (expires_at; None:
until lifted) or is lifted (UnblockUser, or a newer block replacing it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import DeniedWithReason

USER_BLOCKED = "USER_BLOCKED"
MAX_REASON_CHARS = 500


class BlockSource(enum.StrEnum):
    ADMIN = "admin"
    AUTOMATIC = "automatic"


@dataclass(frozen=True)
class Block:
    id: int
    user_id: str
    reason: str
    source: BlockSource
    created_at: datetime
    expires_at: datetime | None
    created_by: str
    level: int = 0
    lifted_at: datetime | None = None

    def in_force(self, now: datetime) -> bool:
        return self.lifted_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True)
class BlockPage:
    blocks: list[Block]
    next_page_token: str


def blocked_refusal(block: Block, now: datetime) -> DeniedWithReason:
    """PERMISSION_DENIED, reason USER_BLOCKED, with the block's reason, source
    and end (and a RetryInfo until then, when it ends)."""
    metadata = {"block_reason": block.reason, "block_source": block.source.value}
    until = ""
    if block.expires_at is not None:
        metadata["expire_time"] = block.expires_at.isoformat()
        until = f" until {block.expires_at.isoformat()}"
    return DeniedWithReason(
        f"user {block.user_id} is blocked{until}: {block.reason}",
        USER_BLOCKED,
        metadata,
        retry_after=block.expires_at - now if block.expires_at is not None else None,
    )
