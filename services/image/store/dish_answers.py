"""The dish model's answers, by recipe text and model (recipes.model_dish).
The repository works in the session it is given; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.common.db import dialect_name, insert_for
from services.image.recipes.model_dish import DishAnswer
from services.image.store.models import DishAnswerRow


class DishAnswerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def find(self, content_hash: str, model: str) -> DishAnswer | None:
        row = self.session.scalar(
            select(DishAnswerRow).where(
                DishAnswerRow.content_hash == content_hash, DishAnswerRow.model == model
            )
        )
        if row is None:
            return None
        return DishAnswer(row.dish, row.cuisine, tuple(row.main_ingredients))

    def add(self, content_hash: str, model: str, answer: DishAnswer, now: datetime) -> None:
        """Keep an answer; a second one for the same recipe text keeps the first."""
        self.session.execute(
            insert_for(dialect_name(self.session), DishAnswerRow)
            .values(
                content_hash=content_hash,
                model=model,
                dish=answer.dish,
                cuisine=answer.cuisine,
                main_ingredients=list(answer.main_ingredients),
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["content_hash", "model"])
        )
