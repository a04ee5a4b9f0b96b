"""Abuse prevention: the triggers that block a user automatically, and the
escalating length of those blocks. Plain Python.

Four triggers, each with a threshold and a window (a threshold of 0 disables
it):

- content_policy_streak: usage records whose error_message starts with
  CONTENT_POLICY_VIOLATION (ImageService writes "<REASON>: <message>"), that
  many in a row, the first and the last within the window. An attempt that
  served an image ends the streak; other failures neither count nor end it.
- input_rejected_streak: the same for INPUT_REJECTED (the provider refused a
  prompt the caller wrote as invalid).
- ignored_rate_limits: Admit refusals by the user's request rate
  (RATE_LIMITED), that many within the window: a client ignoring RetryInfo.
- cache_busting: generated records of one prompt fingerprint (the prompt
  lowercased, without digits and punctuation, its words deduplicated and
  sorted) with that many different exact prompts within the window: noise
  added to a prompt to generate instead of hitting the cache.

A user's automatic block lasts the first duration; one that starts less than
`escalation` after the user's previous automatic block ended lasts the next
duration, and so on (the last one repeats). While any block is in force, a
crossing adds nothing: its records come from requests sent before the block.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.budget.domain.blocks import Block, BlockSource
from services.budget.domain.usage import Outcome, Usage

SYSTEM_ROLE = "system"
RATE_LIMITED = "RATE_LIMITED"


class Trigger(enum.StrEnum):
    CONTENT_POLICY_STREAK = "content_policy_streak"
    INPUT_REJECTED_STREAK = "input_rejected_streak"
    IGNORED_RATE_LIMITS = "ignored_rate_limits"
    CACHE_BUSTING = "cache_busting"

    @property
    def ends_on_success(self) -> bool:
        """A streak trigger: an attempt that served an image ends the streak."""
        return self in (Trigger.CONTENT_POLICY_STREAK, Trigger.INPUT_REJECTED_STREAK)


# The error_message prefix (a refusal reason) each streak trigger counts.
_ERROR_REASONS = {
    "CONTENT_POLICY_VIOLATION": Trigger.CONTENT_POLICY_STREAK,
    "INPUT_REJECTED": Trigger.INPUT_REJECTED_STREAK,
}

_DESCRIPTIONS = {
    Trigger.CONTENT_POLICY_STREAK: "content-policy refusals in a row",
    Trigger.INPUT_REJECTED_STREAK: "prompts rejected by the provider in a row",
    Trigger.IGNORED_RATE_LIMITS: "requests refused for the rate limit",
    Trigger.CACHE_BUSTING: "generations of variants of one prompt",
}


@dataclass(frozen=True)
class TriggerRule:
    """`threshold` events within `window_seconds` block the user; 0 disables."""

    threshold: int
    window_seconds: int

    @property
    def enabled(self) -> bool:
        return self.threshold > 0 and self.window_seconds > 0

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_seconds)


DEFAULT_DURATIONS = (900, 3600, 86400)
DEFAULT_ESCALATION_DAYS = 7


@dataclass(frozen=True)
class AbuseSettings:
    rules: dict[Trigger, TriggerRule]
    # The durations of a user's 1st, 2nd, 3rd... automatic block in a row.
    durations_seconds: Sequence[int] = DEFAULT_DURATIONS
    escalation_days: int = DEFAULT_ESCALATION_DAYS

    def rule(self, trigger: Trigger) -> TriggerRule | None:
        rule = self.rules.get(trigger)
        return rule if rule is not None and rule.enabled else None


# Every trigger off: nothing blocks a user automatically.
NO_ABUSE = AbuseSettings({trigger: TriggerRule(0, 0) for trigger in Trigger})


def streak_trigger(usage: Usage) -> Trigger | None:
    """The streak a failed attempt's record counts toward, from the reason
    its error_message starts with; None for any other record."""
    if usage.success:
        return None
    reason, _, _ = usage.error_message.partition(":")
    return _ERROR_REASONS.get(reason.strip())


def prompt_fingerprint(prompt: str) -> str | None:
    """What is left of a prompt without its noise (case, digits, punctuation,
    spacing, word order, repeated words), hashed; None for a prompt with no
    word at all."""
    letters = "".join(ch if ch.isalpha() else " " for ch in prompt.lower())
    words = sorted(set(letters.split()))
    if not words:
        return None
    return hashlib.sha256(" ".join(words).encode()).hexdigest()


def fingerprint_of(usage: Usage) -> str | None:
    """The fingerprint the ledger keeps with a record: generated ones only."""
    return prompt_fingerprint(usage.prompt) if usage.outcome is Outcome.GENERATED else None


def block_ended_at(block: Block) -> datetime | None:
    """When a block stopped being in force (lifted, or expired); None: never."""
    ends = [moment for moment in (block.lifted_at, block.expires_at) if moment is not None]
    return min(ends) if ends else None


def next_level(previous: Block | None, now: datetime, settings: AbuseSettings) -> int:
    """The level of a new automatic block: one more than the user's previous
    automatic block's when that one ended less than the escalation period
    ago; 1 otherwise."""
    if previous is None:
        return 1
    ended = block_ended_at(previous)
    if ended is not None and now - ended >= timedelta(days=settings.escalation_days):
        return 1
    return max(previous.level, 0) + 1


def automatic_block(
    user_id: str,
    trigger: Trigger,
    rule: TriggerRule,
    level: int,
    now: datetime,
    settings: AbuseSettings,
) -> Block:
    """A new automatic block (not stored yet) of the given level."""
    durations = settings.durations_seconds
    seconds = durations[min(level, len(durations)) - 1]
    reason = (
        f"{rule.threshold} {_DESCRIPTIONS[trigger]} within {rule.window_seconds} s "
        f"(automatic block, level {level}, {seconds} s)"
    )
    return Block(
        id=0,
        user_id=user_id,
        reason=reason,
        source=BlockSource.AUTOMATIC,
        created_at=now,
        expires_at=now + timedelta(seconds=seconds),
        created_by=trigger.value,
        level=level,
    )
