"""Admission control: Admit (the user's block, then the request rates), and
the gate ReserveBudget passes inside its own transaction (the generation
rates and the concurrency caps).

Each rule is one key's TAT, taken in one conditional upsert with the other
rules of the same call (the user's key first, then the system's: the lock
order). A refusal raises inside the transaction, so it rolls back whole: a
refused call moves no TAT and holds nothing. A rule in shadow mode that would
refuse is counted and logged ("would refuse") and the call goes on; its TAT
stays where it was, never past what an admitted call would move it to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from services.budget.app.abuse import AbuseWatch
from services.budget.domain.abuse import RATE_LIMITED
from services.budget.domain.admission import (
    AdmissionPolicy,
    CapState,
    RateRule,
    RateState,
    RuleName,
    admits,
    concurrency_refusal,
    rate_key,
    rate_refusal,
    rate_state,
    to_micros,
)
from services.budget.domain.blocks import Block, blocked_refusal
from services.budget.domain.limits import Tier, UserSettings
from services.budget.domain.usage import AttemptState
from services.budget.domain.validation import Violations
from services.budget.store.rates import Take
from services.budget.store.unit_of_work import BudgetStore, Transaction
from services.common.clock import Clock
from services.common.errors import DomainError, QuotaExceeded, RateLimited

log = logging.getLogger("recipeimage.budget.admission")

# A key taken only for its row lock (a cap without a rate rule): never refuses.
_LOCK_ONLY_TOLERANCE = 2**62

ShadowCounter = Callable[[str], None]


def _take(rule: RateRule) -> Take:
    return Take(rule.key, rule.interval_micros, rule.tolerance_micros)


class Gate:
    """The rate rules and caps, evaluated in a caller's transaction."""

    def __init__(self, policy: AdmissionPolicy, count_shadow: ShadowCounter) -> None:
        self.policy = policy
        self._count_shadow = count_shadow

    def _would_refuse(self, name: RuleName, refusal: QuotaExceeded) -> None:
        self._count_shadow(name.value)
        log.warning(
            "would refuse",
            extra={"rule": name.value, "subject": refusal.subject, "reason": refusal.info.reason},
        )

    def take_rates(
        self, tx: Transaction, rules: list[RateRule], now: datetime, locks: list[Take]
    ) -> list[RateState]:
        """Take a call from each rule (and lock the extra keys), in one
        statement; raise the first enforced rule's refusal."""
        ordered = sorted([*map(_take, rules), *locks], key=lambda t: t.key.startswith("system"))
        admitted = tx.rates.take(ordered, to_micros(now))
        refused = [rule.key for rule in rules if rule.key not in admitted]
        current = tx.rates.load_tats(refused) if refused else {}
        states = []
        for rule in rules:
            tat = admitted.get(rule.key)
            if tat is None:
                tat = current.get(rule.key, to_micros(now))
                refusal = rate_refusal(rule, tat, now)
                if not rule.shadow:
                    raise refusal
                self._would_refuse(rule.name, refusal)
            states.append(rate_state(rule, tat, now))
        return states

    def take_requests(
        self, tx: Transaction, user: UserSettings, tier: Tier, now: datetime
    ) -> list[RateState]:
        rules = self.policy.request_rules(user.user_id, tier, user.rate_overrides)
        return self.take_rates(tx, rules, now, [])

    def take_generation(
        self, tx: Transaction, user: UserSettings, tier: Tier, now: datetime
    ) -> None:
        """ReserveBudget's rules for a new reservation (already inserted, so
        it is counted among the held): generation rates, then the caps."""
        rules = self.policy.generation_rules(user.user_id, tier, user.rate_overrides)
        user_cap = self.policy.user_cap(user.user_id, tier, user.rate_overrides)
        system_cap = self.policy.system_cap()
        named = {rule.name for rule in rules}
        locks = [
            Take(rate_key(name, user.user_id), 0, _LOCK_ONLY_TOLERANCE)
            for name, cap in (
                (RuleName.USER_GENERATIONS, user_cap),
                (RuleName.SYSTEM_GENERATIONS, system_cap),
            )
            if cap is not None and name not in named
        ]
        self.take_rates(tx, rules, now, locks)
        if user_cap is None and system_cap is None:
            return
        user_count, system_count = tx.rates.count_in_flight(user.user_id)
        for cap, count in ((user_cap, user_count), (system_cap, system_count)):
            if cap is not None and count > cap.limit:  # the count includes this one
                refusal = concurrency_refusal(cap, count - 1)
                if not cap.shadow:
                    raise refusal
                self._would_refuse(cap.name, refusal)

    # Peeks: the same rules in the same order, evaluated without writing (a
    # quote). Shadow rules never refuse, and nothing is counted or logged.

    def peek_requests(
        self, tx: Transaction, user: UserSettings, tier: Tier, block: Block | None, now: datetime
    ) -> DomainError | None:
        """What Admit would refuse with now: the block, then the request rates."""
        if block is not None:
            return blocked_refusal(block, now)
        rules = self.policy.request_rules(user.user_id, tier, user.rate_overrides)
        return _peek_rates(tx, rules, now)

    def peek_generation(
        self, tx: Transaction, user: UserSettings, tier: Tier, now: datetime
    ) -> QuotaExceeded | None:
        """What take_generation would refuse a new reservation with now."""
        overrides = user.rate_overrides
        refusal = _peek_rates(tx, self.policy.generation_rules(user.user_id, tier, overrides), now)
        if refusal is not None:
            return refusal
        caps = (self.policy.user_cap(user.user_id, tier, overrides), self.policy.system_cap())
        if all(cap is None or cap.shadow for cap in caps):
            return None
        counts = tx.rates.count_in_flight(user.user_id)
        for cap, count in zip(caps, counts, strict=True):
            if cap is not None and not cap.shadow and count + 1 > cap.limit:
                return concurrency_refusal(cap, count)
        return None

    def snapshot(
        self, tx: Transaction, user: UserSettings, tier: Tier, now: datetime
    ) -> tuple[list[RateState], CapState | None]:
        """Every rate rule that applies to the user with what is left of it,
        and its concurrency cap with its generations in flight: one query."""
        overrides = user.rate_overrides
        rules = [
            *self.policy.request_rules(user.user_id, tier, overrides),
            *self.policy.generation_rules(user.user_id, tier, overrides),
        ]
        tats, in_flight = tx.rates.load_snapshot(user.user_id, [rule.key for rule in rules])
        cap = self.policy.user_cap(user.user_id, tier, overrides)
        return (
            [rate_state(rule, tats.get(rule.key), now) for rule in rules],
            CapState(cap, in_flight) if cap is not None else None,
        )


def _peek_rates(tx: Transaction, rules: list[RateRule], now: datetime) -> RateLimited | None:
    """The first enforced rule that would refuse a call now, from the stored TATs."""
    tats = tx.rates.load_tats(rule.key for rule in rules)
    for rule in rules:
        tat = tats.get(rule.key)
        if not rule.shadow and tat is not None and not admits(rule, tat, now):
            return rate_refusal(rule, tat, now)
    return None


class Admission:
    """Admit: may this user's GenerateImage call go on?"""

    def __init__(
        self,
        store: BudgetStore,
        gate: Gate,
        tier_of: Callable[[Tier | None], Tier],
        clock: Clock,
        abuse: AbuseWatch,
    ) -> None:
        self._store = store
        self._gate = gate
        self._tier_of = tier_of
        self._clock = clock
        self._abuse = abuse

    def admit(
        self, user_id: str, violations: Violations, request_id: str = ""
    ) -> tuple[list[RateState], AttemptState | None]:
        """The user's block first, then the request rates, in one transaction.
        A refusal by the user's request rate rolls that transaction back whole
        and is then counted toward the ignored_rate_limits trigger. With a
        request_id, also what the ledger holds for that attempt."""
        violations.identifier("user_id", user_id)
        if request_id:
            violations.identifier("request_id", request_id)
        violations.raise_if_any()
        now = self._clock.now()
        try:
            with self._store.transaction() as tx:
                user, _, block = tx.blocks.load_context(user_id, now)
                if block is not None:
                    raise blocked_refusal(block, now)
                states = self._gate.take_requests(tx, user, self._tier_of(user.tier), now)
                attempt = _attempt_state(tx, user_id, request_id) if request_id else None
                return states, attempt
        except RateLimited as refusal:
            if refusal.info.reason == RATE_LIMITED:
                self._abuse.rate_limit_refused(self._store, user_id, now)
            raise


def _attempt_state(tx: Transaction, user_id: str, request_id: str) -> AttemptState:
    if tx.usage.has_record(user_id, request_id):
        return AttemptState.RECORDED
    if tx.reservations.load_by_key(user_id, request_id) is not None:
        return AttemptState.RESERVED
    return AttemptState.NEW
