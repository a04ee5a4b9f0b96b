"""Blocks: BlockUser, UnblockUser, ListBlocks (admin only, at the edge).

A change is one transaction: lock the user's row (so two changes of one user
queue), lift the block in force (a new one replaces it), add the new one, and
append the audit entry with the block before and after.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from services.budget.app.paging import Pager
from services.budget.domain.audit import Actor, AuditAction, AuditEntry, AuditSnapshot
from services.budget.domain.blocks import MAX_REASON_CHARS, Block, BlockPage, BlockSource
from services.budget.domain.validation import Violations
from services.budget.store.unit_of_work import BudgetStore
from services.common.clock import Clock
from services.common.errors import NotFound


def _before_id(position: Mapping[str, object]) -> int:
    return int(str(position["i"]))


class Blocks:
    def __init__(self, store: BudgetStore, clock: Clock, pager: Pager) -> None:
        self._store = store
        self._clock = clock
        self._pager = pager

    def block_user(
        self,
        actor: Actor,
        user_id: str,
        reason: str,
        expires_at: datetime | None,
        violations: Violations,
    ) -> Block:
        now = self._clock.now()
        if not reason.strip():
            violations.add("reason", "required: why the user is blocked")
        elif len(reason) > MAX_REASON_CHARS:
            violations.add("reason", f"at most {MAX_REASON_CHARS} characters")
        if expires_at is not None and expires_at <= now:
            violations.add("expire_time", "must be in the future")
        violations.raise_if_any()
        with self._store.transaction() as tx:
            tx.limits.lock_user(user_id, now)
            before = tx.blocks.load_in_force(user_id, now)
            if before is not None:
                tx.blocks.lift(before.id, now, actor.subject)
            block = tx.blocks.store_new(
                Block(0, user_id, reason.strip(), BlockSource.ADMIN, now, expires_at, actor.subject)
            )
            tx.audit.store_entry(
                AuditEntry.new(
                    actor,
                    AuditAction.BLOCK_USER,
                    user_id,
                    AuditSnapshot(block=before),
                    AuditSnapshot(block=block),
                    now,
                )
            )
        return block

    def unblock_user(self, actor: Actor, user_id: str, violations: Violations) -> Block:
        """Lift the user's block in force; NotFound when there is none."""
        violations.raise_if_any()
        now = self._clock.now()
        with self._store.transaction() as tx:
            tx.limits.lock_user(user_id, now)
            block = tx.blocks.load_in_force(user_id, now)
            if block is None:
                raise NotFound(f"user {user_id} has no block in force")
            tx.blocks.lift(block.id, now, actor.subject)
            tx.audit.store_entry(
                AuditEntry.new(
                    actor,
                    AuditAction.UNBLOCK_USER,
                    user_id,
                    AuditSnapshot(block=block),
                    AuditSnapshot(),
                    now,
                )
            )
        return block

    def list_blocks(self, *, page_size: int, page_token: str) -> BlockPage:
        """The blocks in force, newest first."""
        violations = Violations()
        page = self._pager.open(violations, page_size, page_token, {"blocks": "in_force"})
        before_id = page.after(violations, _before_id)
        violations.raise_if_any()
        with self._store.transaction() as tx:
            blocks = tx.blocks.load_page(self._clock.now(), before_id, page.fetch_limit)
        kept, token = self._pager.close(page, blocks, lambda block: {"i": block.id})
        return BlockPage(kept, token)
