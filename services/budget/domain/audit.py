"""The audit log of limit changes: who changed what, before and after."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from services.budget.domain.blocks import Block
from services.budget.domain.credits import Credit
from services.budget.domain.limits import LimitValues, RateLimitValues, Tier


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a token's subject and role, as the audit log keeps them."""

    subject: str
    role: str


class AuditAction(enum.StrEnum):
    SET_USER_TIER = "set_user_tier"
    SET_USER_LIMITS = "set_user_limits"
    SET_SPEND_CAP = "set_spend_cap"
    SET_SYSTEM_LIMITS = "set_system_limits"
    BLOCK_USER = "block_user"
    UNBLOCK_USER = "unblock_user"
    SET_USER_RATE_LIMITS = "set_user_rate_limits"
    GRANT_CREDIT = "grant_credit"


@dataclass(frozen=True)
class AuditSnapshot:
    """The stored settings an audit entry is about, before or after the change.

    For a user: tier (None: the default), overrides and caps. For the system:
    the admin-set limits (daily and monthly; None: the configured ones).
    For BlockUser and UnblockUser: the user's block in force (None: none).
    For SetUserRateLimits: the user's rate overrides.
    For GrantCredit (after): the credit granted.
    """

    tier: Tier | None = None
    overrides: LimitValues | None = None
    cap: LimitValues | None = None
    system: LimitValues | None = None
    block: Block | None = None
    rate_overrides: RateLimitValues | None = None
    credit: Credit | None = None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    created_at: datetime
    actor: str
    actor_role: str
    action: AuditAction
    # The user whose settings changed; "" for the system limits.
    target_user_id: str
    before: AuditSnapshot
    after: AuditSnapshot

    @classmethod
    def new(
        cls,
        actor: Actor,
        action: AuditAction,
        target_user_id: str,
        before: AuditSnapshot,
        after: AuditSnapshot,
        now: datetime,
    ) -> AuditEntry:
        """An entry not stored yet (the store gives it its id)."""
        return cls(0, now, actor.subject, actor.role, action, target_user_id, before, after)


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_page_token: str
