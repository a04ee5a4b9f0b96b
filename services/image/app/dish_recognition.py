"""The optional dish model in GenerateImage: a recipe the rules could not name
is asked about once per recipe text (the answer is kept by its content hash),
and the answer only names that recipe's dish (recipes.model_dish.refined).

A call is paid for and recorded at BudgetService as its own usage record (kind
DISH_RECOGNITION, its own request id, the cost from the reported tokens and the
price table's text-model rates) through RecordUsage: no reservation, so it is
in the user's ledger and spend figures but not held against their limits (it
costs about a ten-thousandth of an image). Any failure of the model leaves the
rules' answer; a failure to record is logged and does not fail the request.
"""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.common.errors import DomainError
from services.common.prices import TextModelPrice
from services.image.app.ports import Budget
from services.image.domain.accounting import Outcome, Usage, UsageKind
from services.image.recipes.analyzer import Recipe, RecipeContext
from services.image.recipes.model_dish import Recognition, needs_model, recipe_hash, refined
from services.image.store.dish_answers import DishAnswerRepository

log = logging.getLogger("recipeimage.image.dish_model")


class DishModel(Protocol):
    """A text model that names a recipe's dish (adapters/dish_model.py); raises
    any Exception when it gives no usable answer."""

    provider: str
    model: str

    def recognize(self, recipe: Recipe) -> Recognition: ...

    def close(self) -> None: ...


class DishRecognition:
    def __init__(
        self,
        *,
        model: DishModel,
        price: TextModelPrice,
        sessions: sessionmaker[Session],
        budget: Budget,
        clock: Clock,
    ) -> None:
        self.model = model
        self.price = price
        self.sessions = sessions
        self.budget = budget
        self.clock = clock

    def refine(self, recipe: Recipe, context: RecipeContext, user_id: str) -> RecipeContext:
        """The rules' context, its dish named by the model when the rules named none."""
        if not needs_model(context):
            return context
        content_hash = recipe_hash(recipe)
        with self.sessions.begin() as session:
            known = DishAnswerRepository(session).find(content_hash, self.model.model)
        if known is not None:
            return refined(context, known)
        try:
            recognition = self.model.recognize(recipe)
        except Exception as exc:  # any failure: the rules stand
            log.warning("the dish model gave no answer", extra={"error": str(exc)})
            return context
        with self.sessions.begin() as session:
            DishAnswerRepository(session).add(
                content_hash, self.model.model, recognition.answer, self.clock.now()
            )
        self._record(recognition, user_id, recipe.recipe_id)
        return refined(context, recognition.answer)

    def _record(self, recognition: Recognition, user_id: str, recipe_id: str) -> None:
        usage = Usage(
            request_id=f"dish-{uuid.uuid4().hex}",
            user_id=user_id,
            recipe_id=recipe_id,
            prompt="",
            size="",
            quality="",
            model=self.model.model,
            provider=self.model.provider,
            outcome=Outcome.GENERATED,
            cost_micros=self.price.cost_micros(recognition.input_tokens, recognition.output_tokens),
            success=True,
            input_tokens=recognition.input_tokens,
            output_tokens=recognition.output_tokens,
            kind=UsageKind.DISH_RECOGNITION,
        )
        try:
            self.budget.record_usage(usage)
        except DomainError:
            log.exception("recording the dish model's usage failed")
