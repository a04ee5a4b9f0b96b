"""Single flight: concurrent identical misses, on any replica, make one generation.

A request claims the generation lease of its cache key in the database
(store/leases.py). One that finds the lease held waits, polling with a
bounded backoff, for the winner's entry and serves it as an exact hit; if the
lease is released without an entry it claims it; if the wait runs out it
generates anyway.

The lease is short (its TTL) and renewed by a heartbeat thread every third of
the TTL while its generation runs: a generation of any length keeps it, and
the lease of a process that died (or hung) lapses within one TTL and is taken
over by a waiter.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from services.common.clock import Clock
from services.image.app.cache_lookup import CacheLookup
from services.image.app.meters import GenerationMeters
from services.image.domain.cache_policy import Hit, Lookup
from services.image.store.leases import LeaseRepository

log = logging.getLogger("recipeimage.image.generation")

FIRST_POLL_SECONDS = 0.05
LONGEST_POLL_SECONDS = 0.5
# Renewals per TTL: a lease survives two missed or slow renewals in a row.
RENEWALS_PER_TTL = 3


class SingleFlight:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        cache: CacheLookup,
        clock: Clock,
        *,
        lease_ttl: timedelta,
        wait_seconds: float,
        meters: GenerationMeters | None = None,
    ) -> None:
        self.sessions = sessions
        self.cache = cache
        self.clock = clock
        self.lease_ttl = lease_ttl
        self.wait_seconds = wait_seconds
        self.meters = meters or GenerationMeters()
        self.renew_seconds = lease_ttl.total_seconds() / RENEWALS_PER_TTL

    @contextmanager
    def turn_to_generate(self, lookup: Lookup) -> Iterator[Hit | None]:
        """Wait for this request's turn to generate lookup's image. Yields the hit
        another request's generation left meanwhile (serve it), or None: generate,
        holding the lease when it could be claimed, released on exit."""
        owner = uuid.uuid4().hex
        claimed = self._claim(lookup.key, owner)
        if not claimed:
            hit, claimed = self._measured_wait(lookup, owner)
            if hit is not None:
                yield hit
                return
        if not claimed:
            yield None
            return
        try:
            with self._renewed(lookup.key, owner):
                # The winner of a lease released a moment ago may have left its entry.
                yield self.cache.find(lookup)
        finally:
            self._release(lookup.key, owner)

    def _measured_wait(self, lookup: Lookup, owner: str) -> tuple[Hit | None, bool]:
        started = time.monotonic()
        hit, claimed = self._wait_for_winner(lookup, owner)
        self.meters.single_flight_wait_seconds(time.monotonic() - started)
        outcome = "served" if hit is not None else "claimed" if claimed else "timed_out"
        self.meters.single_flight_wait(outcome)
        return hit, claimed

    def _claim(self, key: str, owner: str) -> bool:
        with self.sessions.begin() as session:
            return LeaseRepository(session).claim(key, owner, self.clock.now(), self.lease_ttl)

    @contextmanager
    def _renewed(self, key: str, owner: str) -> Iterator[None]:
        """Keep owner's lease on key renewed while the block runs."""
        stop = threading.Event()
        threading.Thread(
            target=self._renew_until,
            args=(key, owner, stop),
            name=f"lease-heartbeat-{key[:12]}",
            daemon=True,
        ).start()
        try:
            yield
        finally:
            # Not joined: a renewal still running after this can only touch
            # owner's row, which the release deletes (or already did).
            stop.set()

    def _renew_until(self, key: str, owner: str, stop: threading.Event) -> None:
        while not stop.wait(self.renew_seconds):
            try:
                with self.sessions.begin() as session:
                    kept = LeaseRepository(session).renew(
                        key, owner, self.clock.now(), self.lease_ttl
                    )
            except Exception:
                # The next beat tries again; the lease lasts until then.
                log.exception("renewing a generation lease failed", extra={"cache_key": key})
                continue
            if not kept:
                if not stop.is_set():
                    # Taken over after this process stalled past the TTL: an identical
                    # generation may run; the first cache entry stored wins.
                    log.warning(
                        "lost a generation lease while generating", extra={"cache_key": key}
                    )
                return

    def _release(self, key: str, owner: str) -> None:
        try:
            with self.sessions.begin() as session:
                LeaseRepository(session).release(key, owner)
        except Exception:
            # It expires on its own; waiters meanwhile wait out their bound.
            log.exception("releasing a generation lease failed", extra={"cache_key": key})

    def _wait_for_winner(self, lookup: Lookup, owner: str) -> tuple[Hit | None, bool]:
        """Another request holds the lease: poll for its entry until the bound.
        (hit, False) when it appeared; (None, True) when the lease came free and
        is now ours; (None, False) when the wait ran out."""
        exact = lookup.exact_only()
        deadline = time.monotonic() + self.wait_seconds
        delay = FIRST_POLL_SECONDS
        while True:
            hit = self.cache.find(exact)
            if hit is not None:
                return hit, False
            if self._claim_if_free(lookup.key, owner):
                return None, True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "waited out an identical generation; generating again",
                    extra={"cache_key": lookup.key, "waited_s": self.wait_seconds},
                )
                return None, False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, LONGEST_POLL_SECONDS)

    def _claim_if_free(self, key: str, owner: str) -> bool:
        with self.sessions.begin() as session:
            leases = LeaseRepository(session)
            now = self.clock.now()
            return not leases.held_by_another(key, owner, now) and leases.claim(
                key, owner, now, self.lease_ttl
            )
