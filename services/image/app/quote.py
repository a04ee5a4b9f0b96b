"""QuoteImage: what GenerateImage would do now for the same request, without
doing any of it. Plain Python: no gRPC, no SQL here.

The same steps as GenerateImage, read only: validate, analyze and build the
prompt (GenerateImage.plan), look each degradation step up in the cache
(nothing counted), ask BudgetService for its side-effect-free check with
admission (no quota, slot or money taken), and choose the step with the
same domain function GenerateImage uses (domain.degradation.choose). Nothing
is admitted, reserved, recorded, cached or leased.
"""

from __future__ import annotations

from services.image.app.generate import GenerateImage
from services.image.app.plans import plan_steps
from services.image.domain.command import GenerateCommand, validate
from services.image.domain.degradation import Action, choose, degraded
from services.image.domain.quote import Quote, decide, windows_after


class QuoteImage:
    def __init__(self, generate: GenerateImage) -> None:
        self._generate = generate

    def __call__(self, command: GenerateCommand) -> Quote:
        generate = self._generate
        request = validate(command, generate.prices, generate.defaults, generate.clock.now().date())
        plan = generate.plan(command, request)
        steps = plan_steps(plan, generate.cache, generate.cache.find(plan.lookup))
        budget = generate.budget.check(
            command.user_id, plan.max_cost_micros, include_admission=True
        )
        choice = choose([step.option for step in steps], budget.room)
        refusal = decide(choice, budget)
        step = steps[choice.index]
        generating = choice.action is not Action.SERVE_CACHED
        expected = step.plan.expected_cost_micros if generating else 0
        served = step.option.step.setting
        return Quote(
            model=request.model,
            prompt=plan.usage.prompt,
            context=plan.lookup.context,
            served=served,
            hit=step.hit if not generating else None,
            generate=generating,
            max_cost_micros=step.plan.max_cost_micros if generating else 0,
            expected_cost_micros=expected,
            per_generation_micros=budget.per_generation_micros,
            windows=windows_after(budget, expected if refusal is None else 0),
            refusal=refusal,
            degraded=(
                degraded(request.setting, served, budget.money_reason, cached=not generating)
                if choice.degraded and refusal is None
                else None
            ),
        )
