"""Abuse prevention: count the events of each trigger (domain.abuse) and block
the user automatically when one crosses its threshold.

Detection runs in the transaction that writes the triggering record: a
release's or RecordUsage's failed record (the streaks), a commit's generated
record (cache busting); an Admit refusal by the user's request rate is
counted in a transaction of its own, after the refused call's transaction
rolled back whole (so counting it moves no rate state: a refused call still
consumes no quota).

Statements: a record that is neither a counted failure nor a generated one
costs none; a counted failure costs one upsert of the user's streak row; a
generated record costs one indexed count of its fingerprint's prompts (and,
only when that reaches the threshold, a lock and a recount). A crossing then
locks the user's row (as BlockUser does, so the user has at most one block in
force), reads the block in force and the previous automatic block, inserts
the block and its audit entry.

Lock order (after the record's own: reservation, ledger): the streak row,
the user's row, the blocks; then, in a settlement, the windows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from services.budget.domain.abuse import (
    SYSTEM_ROLE,
    AbuseSettings,
    Trigger,
    TriggerRule,
    automatic_block,
    fingerprint_of,
    next_level,
    streak_trigger,
)
from services.budget.domain.audit import Actor, AuditAction, AuditEntry, AuditSnapshot
from services.budget.domain.blocks import Block
from services.budget.domain.usage import Usage
from services.budget.store.unit_of_work import BudgetStore, Transaction

log = logging.getLogger("recipeimage.budget.abuse")

BlockCounter = Callable[[str], None]


class AbuseWatch:
    def __init__(self, settings: AbuseSettings, count_block: BlockCounter) -> None:
        self._settings = settings
        self._count_block = count_block

    def after_record(self, tx: Transaction, usage: Usage, now: datetime) -> Block | None:
        """In the transaction that just stored usage (a new record, or an
        amended abandoned one): count it toward its trigger."""
        trigger = streak_trigger(usage)
        if trigger is not None:
            return self._count(tx, usage.user_id, trigger, now)
        if self._settings.rule(Trigger.CACHE_BUSTING) is None:
            return None  # off: no fingerprint to compute (the ledger's is its own)
        fingerprint = fingerprint_of(usage)
        if fingerprint is not None:
            return self._check_cache_busting(tx, usage.user_id, fingerprint, now)
        return None

    def rate_limit_refused(self, store: BudgetStore, user_id: str, now: datetime) -> Block | None:
        """Count an Admit refusal by the user's request rate, in a transaction
        of its own (the refused call's rolled back)."""
        if self._settings.rule(Trigger.IGNORED_RATE_LIMITS) is None:
            return None
        with store.transaction() as tx:
            return self._count(tx, user_id, Trigger.IGNORED_RATE_LIMITS, now)

    def _count(
        self, tx: Transaction, user_id: str, trigger: Trigger, now: datetime
    ) -> Block | None:
        rule = self._settings.rule(trigger)
        if rule is None:
            return None
        events = tx.abuse.count_event(
            user_id, trigger.value, now, now - rule.window, trigger.ends_on_success
        )
        if events < rule.threshold:
            return None
        tx.abuse.reset(user_id, trigger.value)  # the next crossing starts from 0
        return self._block(tx, user_id, trigger, rule, now)

    def _check_cache_busting(
        self, tx: Transaction, user_id: str, fingerprint: str, now: datetime
    ) -> Block | None:
        """Count the different prompts of the fingerprint within the window;
        at the threshold, lock the user's cache-busting row and count again
        after its last block (a concurrent commit may have blocked already)."""
        rule = self._settings.rule(Trigger.CACHE_BUSTING)
        if rule is None:
            return None
        floor = now - rule.window
        if tx.abuse.count_prompts(user_id, fingerprint, floor) < rule.threshold:
            return None
        since = max(floor, tx.abuse.lock_cache_busting(user_id, now))
        if tx.abuse.count_prompts(user_id, fingerprint, since) < rule.threshold:
            return None
        tx.abuse.mark_cache_busting_block(user_id, now)
        return self._block(tx, user_id, Trigger.CACHE_BUSTING, rule, now)

    def _block(
        self, tx: Transaction, user_id: str, trigger: Trigger, rule: TriggerRule, now: datetime
    ) -> Block | None:
        """Block the user, unless a block (an admin's or an automatic one) is
        in force: then the crossing adds nothing, and an admin's block is
        never shortened or replaced."""
        tx.limits.lock_user(user_id, now)
        in_force = tx.blocks.load_in_force(user_id, now)
        if in_force is not None:
            log.info(
                "abuse trigger crossed while blocked",
                extra={"user_id": user_id, "trigger": trigger.value, "block_id": in_force.id},
            )
            return None
        level = next_level(tx.blocks.load_last_automatic(user_id), now, self._settings)
        block = tx.blocks.store_new(
            automatic_block(user_id, trigger, rule, level, now, self._settings)
        )
        tx.audit.store_entry(
            AuditEntry.new(
                Actor(trigger.value, SYSTEM_ROLE),
                AuditAction.BLOCK_USER,
                user_id,
                AuditSnapshot(),
                AuditSnapshot(block=block),
                now,
            )
        )
        log.warning(
            "automatic block",
            extra={
                "user_id": user_id,
                "trigger": trigger.value,
                "level": level,
                "expires_at": block.expires_at.isoformat() if block.expires_at else None,
            },
        )
        self._count_block(trigger.value)
        return block
