"""SimulateLimits: replay a range of the ledger against proposed tier limits
(domain.simulation defines the replay). Read-only: one read transaction
streams the records through the replay."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from services.budget.domain.limits import LimitPolicy, LimitValues, Tier
from services.budget.domain.simulation import Proposal, Replay
from services.budget.domain.validation import MAX_RANGE, Violations
from services.budget.store.unit_of_work import BudgetStore


class Simulation:
    def __init__(self, store: BudgetStore, policy: LimitPolicy) -> None:
        self._store = store
        self._policy = policy

    def run(
        self,
        start: datetime | None,
        end: datetime | None,
        proposed: list[tuple[Tier | None, LimitValues]],
        system: LimitValues,
        violations: Violations,
    ) -> Replay:
        """proposed: tiers' proposed limits (an unset value: the configured
        one); system: the system limits replayed (unset: none)."""
        tiers = _proposed_tiers(proposed, violations)
        for name, value in (("start_time", start), ("end_time", end)):
            if value is None:
                violations.add(name, "required")
        if start is not None and end is not None:
            if end <= start:
                violations.add("end_time", "must be after start_time")
            elif end - start > MAX_RANGE:
                violations.add("end_time", "a range is at most 366 days")
        violations.not_negative("system_daily_micros", system.daily_micros)
        violations.not_negative("system_monthly_micros", system.monthly_micros)
        violations.raise_if_any()
        assert start is not None and end is not None  # checked above
        replay = Replay(self._proposal(tiers, system), self._policy.zone)
        with self._store.transaction() as tx:
            records = tx.simulation.stream_records(start, end, self._policy.default_tier)
            for record in records:
                replay.add(record)
        return replay

    def _proposal(self, proposed: Mapping[Tier, LimitValues], system: LimitValues) -> Proposal:
        tiers = {}
        for tier in Tier:
            configured = self._policy.tier_limits(tier)
            values = proposed.get(tier, LimitValues())
            tiers[tier] = replace(
                configured,
                **{name: value for name, value in values.as_dict().items()},
            )
        return Proposal(tiers, system.daily_micros, system.monthly_micros)


def _proposed_tiers(
    proposed: list[tuple[Tier | None, LimitValues]], violations: Violations
) -> dict[Tier, LimitValues]:
    found: dict[Tier, LimitValues] = {}
    for index, (tier, values) in enumerate(proposed):
        field = f"tiers[{index}]"
        violations.limits(field, values)
        if tier is None:
            violations.add(f"{field}.tier", "required: FREE, PREMIUM or PRO")
        elif tier in found:
            violations.add(f"{field}.tier", "each tier at most once")
        else:
            found[tier] = values
    return found
