"""A recipe's analysis and built prompt, memoized by the recipe's content hash
(recipes.model_dish.recipe_hash: what the analyzer reads, not the recipe id)
in a bounded LRU: a cache hit of a recipe seen before skips the analyzer
(1 to 2 ms of CPU). Both are pure functions of that content, so a memoized
answer is the answer the analyzer would give."""

from __future__ import annotations

import threading
from collections import OrderedDict

from services.image.recipes.analyzer import Recipe, RecipeContext, analyze
from services.image.recipes.model_dish import recipe_hash
from services.image.recipes.prompts import build_prompt

DEFAULT_ENTRIES = 4096


class RecipeMemo:
    def __init__(self, max_entries: int = DEFAULT_ENTRIES) -> None:
        self._max = max(1, max_entries)
        self._entries: OrderedDict[tuple[str, int], tuple[RecipeContext, str]] = OrderedDict()
        self._lock = threading.Lock()

    def understand(self, recipe: Recipe, max_prompt_chars: int) -> tuple[RecipeContext, str]:
        """The recipe's context and the prompt built from it for a model whose
        prompt limit is max_prompt_chars."""
        key = (recipe_hash(recipe), max_prompt_chars)
        with self._lock:
            known = self._entries.get(key)
            if known is not None:
                self._entries.move_to_end(key)
                return known
        context = analyze(recipe)
        answer = (context, build_prompt(context, max_prompt_chars))
        with self._lock:
            self._entries[key] = answer
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return answer

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
