"""Cache lookup: the exact entry for a request, else the best image of the same
dish (when the request looks for one), and counting a hit on its entry.

A lookup reads outside any transaction (autocommit: no BEGIN or ROLLBACK):
one indexed read for the exact entry with its image, then, for a dish, one
index range of candidates with their images. A candidate's recipe context is
parsed once per entry (an entry's context never changes). Hits are counted in
memory and written in batches (app/hit_counts.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.image.app.hit_counts import HitCounts
from services.image.domain.cache_policy import (
    Candidate,
    Hit,
    HitDelta,
    Lookup,
    best_similar,
    cost_saved,
)
from services.image.recipes.analyzer import RecipeContext
from services.image.store.cache_reads import (
    CandidateEntry,
    count_hits,
    find_live_entry,
    similar_candidates,
)

CONTEXTS_KEPT = 20_000


class CacheLookup:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock
        engine: Engine = sessions.kw["bind"]
        self._engine = engine
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._contexts: OrderedDict[tuple[int, datetime], RecipeContext] = OrderedDict()
        self._contexts_lock = threading.Lock()
        self.hits = HitCounts(self._write_hits)

    def find(self, lookup: Lookup) -> Hit | None:
        """The exact entry, else the best image of the same dish (when looked for)."""
        now = self.clock.now()
        with self._reads.connect() as connection:
            entry = find_live_entry(connection, lookup.key, now)
            if entry is not None:
                return Hit(entry.entry_id, entry.image, False, 1.0, entry.cost_micros)
            if lookup.match_key is None:
                return None
            return self._best_of_dish(connection, lookup, now)

    def count_hit(self, hit: Hit) -> None:
        """One more use of the hit's entry, saving what the hit saved (written
        with the next flush of the counts)."""
        self.hits.add(hit, self.clock.now())

    def flush_hits(self) -> None:
        self.hits.flush()

    def _write_hits(self, deltas: list[HitDelta]) -> None:
        with self._engine.begin() as connection:
            count_hits(connection, deltas)

    def _best_of_dish(self, connection: Connection, lookup: Lookup, now: datetime) -> Hit | None:
        assert lookup.match_key is not None
        rows = similar_candidates(connection, lookup.match_key, lookup.quality_rank, now)
        by_id = {row.entry_id: row for row in rows}
        choice = best_similar(
            (self._candidate(row) for row in rows),
            lookup.context,
            lookup.quality_rank,
            lookup.threshold,
        )
        if choice is None:
            return None
        entry = by_id[choice.entry_id]
        saved = cost_saved(
            entry.quality, entry.cost_micros, lookup.quality, lookup.requested_micros
        )
        return Hit(entry.entry_id, entry.image, True, choice.similarity, saved)

    def _candidate(self, row: CandidateEntry) -> Candidate:
        return Candidate(row.entry_id, row.quality_rank, self._context(row), row.entry_id)

    def _context(self, row: CandidateEntry) -> RecipeContext:
        key = (row.entry_id, row.created_at)
        with self._contexts_lock:
            known = self._contexts.get(key)
            if known is not None:
                self._contexts.move_to_end(key)
                return known
        context = RecipeContext.from_json(row.context)
        with self._contexts_lock:
            self._contexts[key] = context
            while len(self._contexts) > CONTEXTS_KEPT:
                self._contexts.popitem(last=False)
        return context
