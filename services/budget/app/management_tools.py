"""The management tools' use cases, handed to the servicer together."""

from __future__ import annotations

from dataclasses import dataclass

from services.budget.app.credits import Credits
from services.budget.app.export import Export
from services.budget.app.near_limits import NearLimits
from services.budget.app.simulation import Simulation


@dataclass(frozen=True)
class ManagementTools:
    credits: Credits
    near_limits: NearLimits
    export: Export
    simulation: Simulation
