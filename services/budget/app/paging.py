"""The one paging path of the List use cases (AIP-158): a page size, and a
signed keyset token bound to the request's other fields."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from services.common import paging
from services.common.errors import Violations
from services.common.paging import PageTokens

P = TypeVar("P")
T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    """One page asked for: its size, where the last page ended (None: the
    first page) and the fields the token is bound to."""

    size: int
    position: Mapping[str, object] | None
    query: Mapping[str, object]

    @property
    def fetch_limit(self) -> int:
        """Read one more than the page holds, to know whether another follows."""
        return self.size + 1

    def after(self, violations: Violations, parse: Callable[[Mapping[str, object]], P]) -> P | None:
        """The position, parsed; None for the first page or a token that does
        not parse (then a violation names page_token)."""
        if self.position is None:
            return None
        try:
            return parse(self.position)
        except (KeyError, TypeError, ValueError):
            violations.add("page_token", "not a page token this service issued")
            return None


class Pager:
    """Opens and closes pages with the service's PageTokens (built in main)."""

    def __init__(self, tokens: PageTokens) -> None:
        self._tokens = tokens

    def open(
        self, violations: Violations, page_size: int, page_token: str, query: Mapping[str, object]
    ) -> PageRequest:
        size = paging.page_size(violations, page_size)
        position = self._tokens.decode(violations, page_token, query)
        return PageRequest(size, position, dict(query))

    def close(
        self,
        request: PageRequest,
        items: list[T],
        position_of: Callable[[T], Mapping[str, object]],
    ) -> tuple[list[T], str]:
        """The page's items and the token of the next page ("" at the end),
        from up to fetch_limit items read."""
        if len(items) <= request.size:
            return items, ""
        kept = items[: request.size]
        return kept, self._tokens.encode(position_of(kept[-1]), request.query)
