"""Cache lookup: the exact entry for a request, else the best image of the same
dish (when the request looks for one), and counting a hit on its entry.

A lookup is one read-only transaction: one indexed read for the exact key,
one index range of candidates for the dish, and the chosen entry's image row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.image.domain.cache_policy import Candidate, Hit, Lookup, best_similar, cost_saved
from services.image.recipes.analyzer import RecipeContext
from services.image.store.cache import CacheRepository
from services.image.store.models import CacheEntry


class CacheLookup:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    def find(self, lookup: Lookup) -> Hit | None:
        """The exact entry, else the best image of the same dish (when looked for)."""
        now = self.clock.now()
        with self.sessions.begin() as session:
            repo = CacheRepository(session)
            entry = repo.find_live(lookup.key, now)
            if entry is not None:
                return Hit(entry.id, repo.image_of(entry), False, 1.0, entry.cost_micros)
            if lookup.match_key is None:
                return None
            return _best_of_dish(repo, lookup, now)

    def count_hit(self, hit: Hit) -> None:
        """One more use of the hit's entry, saving what the hit saved."""
        with self.sessions.begin() as session:
            CacheRepository(session).record_hit(
                hit.entry_id, self.clock.now(), similar=hit.similar, saved_micros=hit.saved_micros
            )


def _best_of_dish(repo: CacheRepository, lookup: Lookup, now: datetime) -> Hit | None:
    assert lookup.match_key is not None
    rows = repo.similar_candidates(lookup.match_key, lookup.quality_rank, now)
    by_id = {row.id: row for row in rows}
    choice = best_similar(
        (_candidate(row) for row in rows),
        lookup.context,
        lookup.quality_rank,
        lookup.threshold,
    )
    if choice is None:
        return None
    entry = by_id[choice.entry_id]
    saved = cost_saved(entry.quality, entry.cost_micros, lookup.quality, lookup.requested_micros)
    return Hit(entry.id, repo.image_of(entry), True, choice.similarity, saved)


def _candidate(row: CacheEntry) -> Candidate:
    return Candidate(row.id, row.quality_rank, RecipeContext.from_json(row.context), row.id)
